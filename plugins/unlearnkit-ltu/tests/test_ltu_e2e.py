"""LTU with the real samplers, MI bank and combiners, found by name through the registry."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import unlearnkit as uk
from unlearnkit.testing import state_equal, tiny_task, trained_tiny_model

from unlearnkit_ltu import LtuConfig

FAST = dict(iterations=6, forget_batch_size=8, query_size=8, lr=0.002, bank_configs={
    "mi-logreg": {"steps": 50}, "mi-mlp-sorted": {"steps": 50}, "mi-mlp-label": {"steps": 50},
})


def test_default_components_are_installed():
    config = LtuConfig()
    assert set(config.samplers) <= set(uk.list_samplers())
    assert set(config.bank) <= set(uk.list_attacks())
    assert config.combiner in uk.list_combiners()
    assert all(uk.get_attack(name).differentiable for name in config.bank)


def test_default_ltu_unlearns_a_tiny_task(tiny):
    model, task = tiny
    view = task.view({"forget", "retain", "val"}, who="ltu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = uk.get_unlearner("ltu", FAST).unlearn(model, view, seed=1)
    assert view.accessed <= {"forget", "retain", "val"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not state_equal(new, model)
    metrics = uk.evaluate(new, task, attack="svc-confidence")
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("UA", "RA", "TA", "MIA"))


def test_ltu_at_its_defaults_changes_the_weights_and_lowers_the_forget_confidence():
    """What every baseline's defaults are held to (unlearnkit-baselines' test_baselines_defaults.py)."""
    model, _ = trained_tiny_model()  # memorises its training set: true-class confidence 0.999 on class 1
    task = tiny_task(forget="class:1")
    unlearner = uk.get_unlearner("ltu")
    assert unlearner.config.stop == "fixed"  # the paper's length by default
    unlearned = unlearner.unlearn(model, task, seed=0)
    assert not state_equal(unlearned, model)
    assert _true_class_confidence(unlearned, task.forget) < _true_class_confidence(model, task.forget)


def _true_class_confidence(model: torch.nn.Module, data) -> float:
    with torch.no_grad():
        return torch.softmax(model.eval()(data.x), 1).gather(1, data.y[:, None]).mean().item()


def test_four_forget_samples_and_a_few_dozen_retained_run_to_the_end(tiny):
    """The small-data regime of a deletion request: |D_f| = 4, |D̂_r| = 30, |D_val| = 6; the
    batches, query sets and audit set shrink to what there is, and nothing becomes NaN."""
    model, task = tiny
    small = SimpleNamespace(
        forget=task.forget.subset(torch.arange(4)), retain=task.retain.subset(torch.arange(30)),
        val=task.val.subset(torch.arange(6)), num_classes=task.num_classes, recipe=task.recipe,
    )
    run = uk.get_unlearner("ltu").prepare(model, small)  # the defaults: B = 64, n_q = 21, audit 32 + 32
    assert run.audit_size == 4
    for _ in range(3):
        losses = run.iteration()
        assert all(math.isfinite(v) for v in losses.values())


def test_one_sample_of_each_part_is_enough(tiny):
    """At its minimums (one sample of D_f, D̂_r and D_val) LTU at its defaults runs, with finite losses."""
    model, task = tiny
    smallest = SimpleNamespace(**{name: getattr(task, name).subset(torch.arange(1)) for name in ("forget", "retain", "val")},
                               num_classes=task.num_classes, recipe=task.recipe)
    run = uk.get_unlearner("ltu").prepare(model, smallest)
    for _ in range(2):
        assert all(math.isfinite(v) for v in run.iteration().values())
    assert not state_equal(model, trained_tiny_model()[0])


@pytest.fixture
def spy_combiner(register_component):
    """Register `spy-<name>` wrapping the real combiner `<name>`, recording its inputs and outputs."""
    records: list = []

    def wrap(name: str) -> str:
        real_entry = uk.get_combiner(name)

        class Spy(uk.GradientCombiner):
            def reset(self) -> None:
                self.real.reset()

            def combine(self, g_remember, g_forget):
                out = self.real.combine(g_remember, g_forget)
                records.append(([g.clone() for g in g_remember], [g.clone() for g in g_forget], [o.clone() for o in out]))
                return out

        def factory(cfg):
            spy = Spy(cfg)
            spy.real = uk.get_combiner(name)
            return spy

        register_component("combiner", f"spy-{name}", factory, type(real_entry.config))
        return f"spy-{name}"

    wrap.records = records
    return wrap


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("combiner", ["alternate", "sum", "harmonize"])
def test_ablation_combiners_drive_the_update(tiny, spy_combiner, combiner):
    model, task = tiny
    name = spy_combiner(combiner)
    run = uk.get_unlearner("ltu", {**FAST, "combiner": name, "momentum": 0.0, "weight_decay": 0.0}).prepare(model, task)
    for i in range(2):
        before = _flat(p.detach() for p in model.parameters())
        scale = run.iteration()["step_scale"]  # η_t = η α_t / α
        g_r, g_f, g = spy_combiner.records[i]
        torch.testing.assert_close(_flat(p.detach() for p in model.parameters()), before - FAST["lr"] * scale * _flat(g))
        if combiner == "alternate":  # w/ iterative Grad: g_f on odd iterations (1, 3, ...), g_r on even ones
            torch.testing.assert_close(g, g_f if i == 0 else g_r)
        elif combiner == "sum":  # w/ GradAdd
            torch.testing.assert_close(g, [a + b for a, b in zip(g_r, g_f)])
        else:  # eq. 12: forgetting never undoes remembering
            r = _flat(g_r)
            assert torch.dot(_flat(g), r) >= (r @ r) * (1 - 1e-4)
