"""Registration, declared reads, configs, data-access enforcement and divergence of the baselines."""

from __future__ import annotations

from typing import ClassVar, Optional

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.core.config import structure_config, unstructure_config
from unlearnkit.core.plugins import registry
from unlearnkit.engine.stopping import STOP_RULES
from unlearnkit.testing import trained_tiny_model
from unlearnkit_baselines.plugin import BASELINES

# What each method may read (the LTU paper's access rules): only Retrain reads all of D_r;
# every other method that needs D_r reads the γ-limited D̂_r (`retain`).
EXPECTED_READS = {
    "retrain": {"retain_full"},
    "ft": {"retain"},
    "randl": {"forget", "retain"},
    "ga": {"forget"},
    "amnesiac": {"forget", "retain"},
    "fisher": {"retain"},
    "ssd": {"forget", "train"},
    "badt": {"forget", "retain"},
    "salun": {"forget", "retain"},
    "neggrad-plus": {"forget", "retain"},
    "scrub": {"forget", "retain"},
    "l1-sparse": {"retain"},
    "sfron": {"forget", "retain"},
}


def test_every_baseline_is_registered_by_this_distribution():
    assert set(BASELINES) == set(EXPECTED_READS)
    for name in BASELINES:
        entry = registry.get("unlearner", name)
        assert entry.package == "unlearnkit-baselines" and entry.version == "0.1.0"
        assert name in uk.list_unlearners()


@pytest.mark.parametrize("name", sorted(EXPECTED_READS))
def test_declared_reads_follow_the_access_rules(name):
    unlearner = uk.get_unlearner(name)
    assert isinstance(unlearner, uk.Unlearner)
    stop = getattr(unlearner.config, "stop", "fixed")  # a stop rule compares D_f with held-out D_val
    assert set(unlearner.reads) == EXPECTED_READS[name] | ({"forget", "val"} if stop != "fixed" else set())


def test_reading_an_undeclared_part_raises_data_access_error(register_component):
    class Sneaky(uk.Unlearner):
        reads: ClassVar[frozenset[str]] = frozenset({"forget"})

        def run(self, model, task, *, seed, device, progress):
            task.retain_full  # not declared
            return model.eval()

    register_component("unlearner", "test-sneaky", Sneaky, BASELINES["retrain"][1])
    model, task = trained_tiny_model()
    with pytest.raises(uk.DataAccessError, match="Sneaky read task.retain_full"):
        uk.get_unlearner("test-sneaky").unlearn(model, task)
    with pytest.raises(uk.DataAccessError, match="test"):
        task.view(uk.get_unlearner("retrain").reads, who="retrain").test


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("salun", {"sparsity": 1.5}, "$.salun.sparsity: must be in (0.0, 1.0], got 1.5"),
        ("salun", {"sparsity": 0.0}, "$.salun.sparsity: must be in (0.0, 1.0], got 0.0"),
        ("ga", {"lr": -1.0}, "$.ga.lr: must be > 0, got -1.0"),
        ("ft", {"epochs": 0}, "$.ft.epochs: must be > 0, got 0"),
        ("randl", {"mix": "interleaved"}, "$.randl.mix: must be one of 'shuffled', 'forget-first', got 'interleaved'"),
        ("fisher", {"alpha": 0.0}, "$.fisher.alpha: must be > 0, got 0.0"),
        ("ssd", {"selection_weighting": -2.0}, "$.ssd.selection_weighting: must be > 0, got -2.0"),
        ("badt", {"retain_fraction": 2.0}, "$.badt.retain_fraction: must be in (0.0, 1.0], got 2.0"),
        ("amnesiac", {"batch_size": 1.5}, "$.amnesiac.batch_size: expected an integer, got 1.5"),
        ("retrain", {"epochs": 3}, "$.retrain: unknown key(s) 'epochs'"),
        ("neggrad-plus", {"beta": 1.5}, "$.neggrad-plus.beta: must be in [0.0, 1.0], got 1.5"),
        ("scrub", {"lr_decay_epochs": [3, 0]}, "$.scrub.lr_decay_epochs: must be > 0, got 0"),
        ("scrub", {"stop": "early"}, "$.scrub.stop: must be one of 'fixed', 'calibrated', 'rewind', got 'early'"),
        ("l1-sparse", {"epochs": 3, "no_l1_epochs": 5}, "$.l1-sparse.no_l1_epochs: must be <= epochs (3), got 5"),
        ("sfron", {"forget_every": 0}, "$.sfron.forget_every: must be > 0, got 0"),
    ],
)
def test_bad_config_values_name_the_field_and_the_value(name, overrides, message):
    with pytest.raises(uk.ConfigError) as info:
        uk.get_unlearner(name, **overrides)
    assert message in str(info.value)


def _values(field: attrs.Attribute) -> st.SearchStrategy:
    if field.name == "mix":
        return st.sampled_from(["shuffled", "forget-first"])
    if field.name == "stop":
        return st.sampled_from(STOP_RULES)
    if field.name == "no_l1_epochs":  # at most `epochs`, which is at least 1
        return st.integers(0, 1)
    if field.name == "lr_decay_epochs":
        return st.lists(st.integers(1, 100), max_size=4).map(tuple)
    if field.name == "recipe":
        return st.sampled_from(["auto", "class", "random"])
    if field.type in (bool, "bool"):
        return st.booleans()
    if field.type in (Optional[int], "Optional[int]"):  # None: the translation rule's value
        return st.none() | st.integers(1, 10_000)
    if field.type in (Optional[float], "Optional[float]"):
        return st.none() | st.floats(1e-8, 1e3)
    if field.type in (int, "int"):
        return st.integers(1, 10_000)
    if field.name in ("sparsity", "retain_fraction", "beta"):
        return st.floats(1e-6, 1.0)
    return st.floats(1e-8, 1e3)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_configs_round_trip_through_plain_data(name):
    config_cls = BASELINES[name][1]
    fields = attrs.fields(config_cls)
    strategy = st.fixed_dictionaries({f.name: _values(f) for f in fields})

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(strategy)
    def run(values):
        config = config_cls(**values)
        assert structure_config(config_cls, unstructure_config(config)) == config

    run()


def test_a_diverging_run_raises_divergence_error_naming_the_method():
    model, task = trained_tiny_model()
    with pytest.raises(uk.DivergenceError, match="^ga: loss became"):
        uk.get_unlearner("ga", lr=1e8, epochs=20, stop="fixed").unlearn(model, task)


def test_progress_bars_do_not_change_the_result():
    model, task = trained_tiny_model()
    quiet = uk.get_unlearner("randl").unlearn(model, task, seed=1)
    shown = uk.get_unlearner("randl").unlearn(model, task, seed=1, progress=True)
    assert all(torch.equal(a, b) for a, b in zip(quiet.state_dict().values(), shown.state_dict().values()))
