"""SCRUB's two phases, its schedule and its distillation loss are the reference's (meghdadk/SCRUB)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.engine.stopping import StopMonitor
from unlearnkit.testing import trained_tiny_model
from unlearnkit_baselines import scrub
from unlearnkit_baselines._common import sgd
from unlearnkit_baselines.scrub import distill_kl, epoch_lr, max_steps, min_steps


def _kl(student, teacher, data, temperature) -> float:
    with torch.no_grad():
        return distill_kl(student.eval()(data.x), teacher.eval()(data.x), temperature).item()


def _loss(model, data) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.eval()(data.x), data.y).item()


def _perturbed(model, scale: float, seed: int = 0):
    """A copy of `model` with Gaussian noise on every weight (so the student differs from its teacher)."""
    student = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return student


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 20), st.integers(2, 8), st.floats(0.5, 8.0), st.integers(0, 2**31 - 1))
def test_distill_kl_is_the_per_sample_kl_of_the_softened_outputs_times_t_squared(n, classes, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(n, classes, generator=g) * 3, torch.randn(n, classes, generator=g) * 3
    p_t, p_s = F.softmax(teacher / temperature, 1), F.softmax(student / temperature, 1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * temperature**2
    torch.testing.assert_close(distill_kl(student, teacher, temperature), expected, rtol=1e-4, atol=1e-5)
    assert distill_kl(teacher, teacher, temperature).abs().item() < 1e-5


def test_max_steps_raise_the_forget_kl():  # from a student equal to its teacher the KL's gradient is zero
    teacher, task = trained_tiny_model()
    student = _perturbed(teacher, 0.02)
    cfg = uk.get_unlearner("scrub").config
    before = _kl(student, teacher, task.forget, cfg.temperature)
    optimizer = sgd(student, 0.005, cfg.momentum, cfg.weight_decay)
    for _ in range(3):
        max_steps(student, teacher, uk.batches(task.forget, 8), optimizer, temperature=cfg.temperature, step=0)
    assert _kl(student, teacher, task.forget, cfg.temperature) > 10 * before > 0


def test_min_steps_lower_the_retain_kl_and_the_retain_loss():
    teacher, task = trained_tiny_model()
    cfg = uk.get_unlearner("scrub").config
    kl_only = dict(gamma=0.0, alpha=1.0)
    class_recipe = dict(gamma=0.99, alpha=0.001)  # the class recipe weighs CE 0.99 and the KL 0.001
    for weights, measure in ((kl_only, lambda s: _kl(s, teacher, task.retain, cfg.temperature)), (class_recipe, lambda s: _loss(s, task.retain))):
        student = _perturbed(teacher, 0.05)
        before = measure(student)
        optimizer = sgd(student, 0.005, cfg.momentum, cfg.weight_decay)
        for _ in range(3):
            min_steps(student, teacher, uk.batches(task.retain, 16), optimizer, temperature=cfg.temperature, step=0, **weights)
        assert measure(student) < 0.7 * before


def test_the_learning_rate_drops_tenfold_after_each_milestone():
    assert [epoch_lr(1.0, e, (3, 5, 9), 0.1) for e in (1, 3, 4, 5, 6, 9, 10)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_max_passes_run_in_the_first_max_epochs_epochs_then_min_passes_only(monkeypatch):
    calls = []
    for name in ("max_steps", "min_steps"):
        phase = getattr(scrub, name)

        def spy(student, teacher, batches, optimizer, *, _phase=phase, _name=name, **kwargs):
            calls.append((_name, optimizer.param_groups[0]["lr"]))
            return _phase(student, teacher, batches, optimizer, **kwargs)

        monkeypatch.setattr(scrub, name, spy)
    model, task = trained_tiny_model()
    uk.get_unlearner("scrub", epochs=5, max_epochs=2, lr=0.01, lr_decay_epochs=(3,)).unlearn(model, task)
    assert [name for name, _ in calls] == ["max_steps", "min_steps"] * 2 + ["min_steps"] * 3
    assert [lr for _, lr in calls] == pytest.approx([0.01] * 4 + [0.01, 0.001, 0.001])


def test_scrub_with_rewind_runs_its_full_length_and_returns_the_checked_state_closest_to_the_target(monkeypatch):
    checked = {}
    check = StopMonitor.check

    def spy(self, model, step):
        checked[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return check(self, model, step)

    monkeypatch.setattr(StopMonitor, "check", spy)
    model, task = trained_tiny_model()
    settings_ = dict(recipe="class", lr=0.01, epochs=4, max_epochs=4, batch_size=8, forget_steps_per_pass=-(-len(task.forget) // 8))
    rewind = uk.get_unlearner("scrub", stop="rewind", stop_every=4, **settings_)
    assert rewind.reads == {"forget", "retain", "val"}  # the target compares D_f with held-out D_val
    chosen = rewind.unlearn(model, task)
    info = rewind.run_info
    forget_batch = -(-len(task.forget) // settings_["forget_steps_per_pass"])
    steps_per_epoch = -(-len(task.forget) // forget_batch) + -(-len(task.retain) // 8)
    assert info["stop_reason"] == "rewind" and info["steps"] == max(checked) == 4 * steps_per_epoch
    assert info["stop_step"] % 4 == 0 and info["stop_step"] < info["steps"]  # rewound to an earlier check
    assert all(torch.equal(v, checked[info["stop_step"]][k]) for k, v in chosen.state_dict().items())
    full = uk.get_unlearner("scrub", **settings_).unlearn(model, task)
    assert all(torch.equal(v, checked[info["steps"]][k]) for k, v in full.state_dict().items())  # the same run, unrewound
    ua = [uk.evaluate(m, task, attack=None)["UA"] for m in (chosen, full)]
    assert ua[0] < ua[1]  # the over-forgetting end of the run is what rewinding undoes
