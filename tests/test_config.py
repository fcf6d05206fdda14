"""Config classes: frozen, keyword-only, validated; one converter; round trips; error paths."""

from __future__ import annotations

import math
import typing

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.core.config import config_hash, structure_config, unstructure_config
from unlearnkit.core.plugins import registry
from unlearnkit.engine.runconfig import RunConfig
from unlearnkit.engine.training import TrainConfig

CONFIG_CLASSES = sorted({e.config_cls for e in registry.entries()} | {TrainConfig, RunConfig}, key=lambda c: c.__qualname__)


def _strategy(tp: typing.Any) -> st.SearchStrategy:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-5, 10**6)
    if tp is float:
        return st.floats(-1e6, 1e6, allow_nan=False)
    if tp is str:
        return st.text(max_size=12)
    if origin is typing.Union:
        return st.one_of(*[_strategy(a) for a in args])
    if tp is type(None):
        return st.none()
    if origin in (tuple,) and args and args[-1] is Ellipsis:
        return st.lists(_strategy(args[0]), max_size=4).map(tuple)
    if origin in (tuple,):
        return st.tuples(*[_strategy(a) for a in args])
    if origin in (list,):
        return st.lists(_strategy(args[0]) if args and args[0] is not typing.Any else st.integers(), max_size=4)
    if origin in (dict,):
        return st.dictionaries(st.text("abc", min_size=1, max_size=4), st.integers(), max_size=3)
    if attrs.has(tp):
        return st.just(tp())
    raise TypeError(f"no strategy for config field type {tp!r}: teach _strategy this type")


@st.composite
def instances(draw, cls):
    hints = typing.get_type_hints(cls)
    values = {}
    for field in attrs.fields(cls):
        if draw(st.booleans()):
            values[field.name] = draw(_strategy(hints[field.name]))
    try:
        return cls(**values)
    except (ValueError, TypeError):
        assume(False)


def test_every_config_class_is_frozen_and_keyword_only():
    for cls in CONFIG_CLASSES:
        instance = cls()
        fields = attrs.fields(cls)
        assert all(f.kw_only for f in fields), cls
        if fields:
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(instance, fields[0].name, None)


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__qualname__)
def test_round_trip(cls):
    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(instances(cls))
    def check(config):
        data = unstructure_config(config)
        assert structure_config(cls, data) == config
        assert config_hash(config) == config_hash(structure_config(cls, data))

    check()


def test_errors_carry_the_path_of_the_bad_field():
    with pytest.raises(uk.ConfigError) as info:
        structure_config(RunConfig, {"task": {"seed": "x"}, "bench": {"seeds": [0, "a"]}, "extra": 1})
    text = str(info.value)
    assert "$.task.seed: expected an integer, got 'x'" in text
    assert "$.bench.seeds[1]: expected an integer, got 'a'" in text
    assert "$: unknown key(s) 'extra'" in text
    with pytest.raises(uk.ConfigError, match=r"\$\.task\.retain_access: must be in \(0\.0, 1\.0\], got 1\.5"):
        structure_config(RunConfig, {"task": {"retain_access": 1.5}})


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "$.train.epochs: must be > 0, got 0"),
    ({"lr": -1}, "$.train.lr: must be > 0, got -1"),
    ({"lr": math.inf}, "$.train.lr: must be finite, got inf"),
    ({"epochs": 2.5}, "$.train.epochs: expected an integer, got 2.5"),
    ({"epochs": True}, "$.train.epochs: expected an integer, got True"),
    ({"schedule": "linear"}, "$.train.schedule: must be one of 'cosine', 'step', 'constant', got 'linear'"),
    ({"momentum": "high"}, "$.train.momentum: expected a number, got 'high'"),
])
def test_validators_quote_the_bad_value(bad, message):
    with pytest.raises(uk.ConfigError) as info:
        structure_config(TrainConfig, bad, path="$.train")
    assert message in str(info.value)


def test_toml_run_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[task]\ndataset = "synthetic"\nseed = 3\n[train]\nepochs = 2\n[[bench.methods]]\nname = "x"\nlabel = "y"\n')
    cfg = structure_config(RunConfig, uk.load_toml(path))
    assert cfg.task.dataset == "synthetic" and cfg.task.seed == 3 and cfg.train == {"epochs": 2}
    assert cfg.bench.methods == [{"name": "x", "label": "y"}]
    path.write_text("[task\n")
    with pytest.raises(uk.ConfigError, match="malformed TOML"):
        uk.load_toml(path)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12))
def test_fuzzed_run_configs_only_raise_config_error(data):
    for payload in (data, {"task": data}, {"bench": data}, {"train": data}):
        try:
            structure_config(RunConfig, payload)
        except uk.ConfigError:
            pass
