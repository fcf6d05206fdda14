"""Each of the paper's ablations, as a setting, changes exactly what it claims."""

from __future__ import annotations

import torch

import unlearnkit as uk
from unlearnkit.testing import state_equal

import unlearnkit_ltu.meta as meta
from unlearnkit_ltu import ABLATIONS, LtuConfig


def _count_calls(monkeypatch):
    """Count meta_tune calls (each builds a θ') and autograd.grad calls with create_graph=True."""
    counts = {"meta_tune": 0, "create_graph": 0}
    real_tune, real_grad = meta.meta_tune, torch.autograd.grad

    def tune(*args, **kwargs):
        counts["meta_tune"] += 1
        return real_tune(*args, **kwargs)

    def grad(*args, **kwargs):
        counts["create_graph"] += bool(kwargs.get("create_graph", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(meta, "meta_tune", tune)
    monkeypatch.setattr(torch.autograd, "grad", grad)
    return counts


def test_ablations_are_valid_settings():
    for name, overrides in ABLATIONS.items():
        LtuConfig(**overrides)  # raises on a bad setting
    assert ABLATIONS["wo-forfeed"] == {"forget_feedback": False}
    assert ABLATIONS["gradadd"] == {"combiner": "sum"} and ABLATIONS["iterative"] == {"combiner": "alternate"}


def test_full_ltu_uses_every_component_and_two_inner_steps_per_iteration(doubles, tiny, monkeypatch):
    model, task = tiny
    counts = _count_calls(monkeypatch)
    uk.get_unlearner("ltu", doubles.config(iterations=3)).unlearn(model, task)
    assert counts == {"meta_tune": 6, "create_graph": 6}
    for name in doubles.samplers:
        assert doubles.calls[name]["prepare"] == 1 and doubles.calls[name]["sample"] == 3
    for name in doubles.bank:
        assert doubles.calls[name]["fit"] == 1
    assert sum(doubles.calls[name]["predict_proba"] for name in doubles.bank) == 3 * 2
    assert doubles.calls["test-project"]["combine"] == 3


def test_without_forgetting_feedback_the_bank_is_never_built_and_val_never_read(doubles, tiny):
    model, task = tiny
    view = task.view({"forget", "retain", "val"}, who="ltu")
    uk.get_unlearner("ltu", doubles.config(forget_feedback=False)).unlearn(model, view)
    assert all(not doubles.calls[name] for name in doubles.bank)
    assert not doubles.calls["test-project"]  # g = g_r, no combiner
    assert "val" not in view.accessed
    assert doubles.calls["test-random"]["sample"] == 4


def test_without_remembering_feedback_the_samplers_are_never_called(doubles, tiny):
    model, task = tiny
    uk.get_unlearner("ltu", doubles.config(remember_feedback=False)).unlearn(model, task)
    assert all(not doubles.calls[name] for name in doubles.samplers)
    assert not doubles.calls["test-project"]  # g = g_f
    assert doubles.calls["test-mi-loss"]["fit"] == 1


def test_without_meta_optimisation_no_temporary_weights_are_built(doubles, tiny, monkeypatch):
    model, task = tiny
    counts = _count_calls(monkeypatch)
    new = uk.get_unlearner("ltu", doubles.config(meta_opt=False)).unlearn(model, task)
    assert counts == {"meta_tune": 0, "create_graph": 0}
    assert not state_equal(new, model)
    assert doubles.calls["test-project"]["combine"] == 4


def test_first_order_skips_second_order_graphs_and_gives_another_model(doubles, tiny, monkeypatch):
    model, task = tiny
    counts = _count_calls(monkeypatch)
    first = uk.get_unlearner("ltu", doubles.config(first_order=True)).unlearn(model, task)
    assert counts == {"meta_tune": 8, "create_graph": 0}
    full = uk.get_unlearner("ltu", doubles.config()).unlearn(model, task)
    assert not state_equal(first, full)


def test_the_configured_combiner_receives_both_gradients_each_iteration(doubles, tiny):
    model, task = tiny
    uk.get_unlearner("ltu", doubles.config(combiner="test-sum", iterations=2)).unlearn(model, task)
    assert doubles.calls["test-sum"] == {"reset": 1, "combine": 2}
    assert not doubles.calls["test-project"]
    for g_r, g_f, g in doubles.combined:
        torch.testing.assert_close(g, [a + b for a, b in zip(g_r, g_f)])
        assert not all(torch.equal(a, b) for a, b in zip(g_r, g_f))
