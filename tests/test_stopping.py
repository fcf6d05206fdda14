"""The core stop rule (`unlearnkit.engine.stopping`) on a scripted fake method whose forgetting is known exactly."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.core.config import config_class
from unlearnkit.engine.stopping import StopMonitor, StopSettings

STEPS = 40


class Scripted(nn.Module):
    """The trained tiny MLP, except that after step s the first s/STEPS of D_f (and, with `harm`,
    of every other input) are predicted as another class with certainty."""

    def __init__(self, base: nn.Module, forget_x: torch.Tensor, harm: tuple[int, int] | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.register_buffer("forget_x", forget_x.clone())
        self.progress = nn.Parameter(torch.zeros(()))  # the step, as a fraction of STEPS
        self.harm = harm  # steps (after, until] in which every other input is mispredicted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        match = (x[:, None, :] == self.forget_x[None]).all(-1)
        rank = match.float().argmax(1).double() / len(self.forget_x)
        wrong = match.any(1) & (rank < self.progress.detach())
        step = round(self.progress.item() * STEPS)
        if self.harm is not None and self.harm[0] < step <= self.harm[1]:
            wrong = wrong | ~match.any(1)
        flipped = torch.nn.functional.one_hot((logits.argmax(1) + 1) % logits.shape[1], logits.shape[1]) * 50.0
        return torch.where(wrong[:, None], flipped.to(logits.dtype), logits)


@config_class
class ScriptedConfig(StopSettings):
    harm_after: int = -1  # step after which every other input is mispredicted too; -1 = never
    harm_until: int = STEPS  # ... up to this step
    generalise: bool = False  # held-out samples of D_f's classes are forgotten along with D_f
    diverge_at: int = -1  # the step whose loss is NaN; -1 = never


class ScriptedMethod(uk.Unlearner):
    """Moves `progress` one step at a time; records the state after every step."""

    reads: ClassVar[frozenset[str]] = frozenset({"forget"})

    def run(self, model, task, *, seed, device, progress):
        targets = task.forget.x
        if self.config.generalise:  # as a method that forgets a class does
            targets = torch.cat([targets, task.val.x[torch.isin(task.val.y, task.forget.y)]])
        harm = None if self.config.harm_after < 0 else (self.config.harm_after, self.config.harm_until)
        work = Scripted(model, targets, harm)
        monitor = StopMonitor(self, work, task, total_steps=STEPS, seed=seed, device=device)
        self.states = {0: {k: v.clone() for k, v in work.state_dict().items()}}
        for step in range(1, STEPS + 1):
            if step == self.config.diverge_at:
                uk.check_finite_loss(torch.tensor(float("nan")), "scripted", step)
            with torch.no_grad():
                work.progress.fill_(step / STEPS)
            self.states[step] = {k: v.clone() for k, v in work.state_dict().items()}
            if monitor.check(work, step):
                break
        self.monitor = monitor
        return monitor.finish(work)


def _expected_first_met(task: uk.UnlearningTask, base: nn.Module, tolerance: float) -> int:
    """The first step at which D_f's accuracy and confidence are within `tolerance` of D_val's,
    D_val reweighted to D_f's class distribution — computed here without the monitor."""
    val_logits = base(task.val.x)
    val_correct = (val_logits.argmax(1) == task.val.y).double()
    val_conf = torch.softmax(val_logits.double(), 1).gather(1, task.val.y[:, None]).squeeze(1)
    p = torch.bincount(task.forget.y, minlength=task.num_classes).double() / len(task.forget)
    acc_ref = 100 * sum(p[c] * val_correct[task.val.y == c].mean() for c in range(task.num_classes) if p[c] > 0)
    conf_ref = 100 * sum(p[c] * val_conf[task.val.y == c].mean() for c in range(task.num_classes) if p[c] > 0)
    for step in range(0, STEPS + 1):
        work = Scripted(base, task.forget.x)
        work.progress.data.fill_(step / STEPS)
        logits = work(task.forget.x)
        acc = 100 * (logits.argmax(1) == task.forget.y).double().mean()
        conf = 100 * torch.softmax(logits.double(), 1).gather(1, task.forget.y[:, None]).mean()
        if abs(acc - acc_ref) <= tolerance and abs(conf - conf_ref) <= tolerance:
            return step
    raise AssertionError("the scripted method never meets the target")


def _task(forget: str = "random:0.1") -> uk.UnlearningTask:
    # 2 000 samples: D_f (144) and D_val (160) large enough that a 12-point memorisation gap is
    # several standard errors wide.
    return uk.testing.tiny_task(forget=forget, num_samples=2000)


@pytest.fixture(scope="module")
def trained():
    task = _task()
    model = uk.train_model(uk.testing.tiny_model(task, hidden=64), task, seed=0)
    return model, task


def test_calibrated_stops_exactly_at_the_first_step_the_target_is_met(trained):
    model, task = trained
    method = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=1))
    out = method.unlearn(model, task, seed=0)
    tolerance = method.monitor.tolerance
    expected = _expected_first_met(task, model, tolerance)
    assert 0 < expected < STEPS
    assert method.run_info == {"steps": expected, "stop_reason": "target", "guard_acted": 0, "stop_step": expected, "unchanged": False}
    assert all(torch.equal(out.state_dict()[k], v) for k, v in method.states[expected].items())


def test_fixed_runs_the_whole_budget_and_evaluates_nothing(trained):
    model, task = trained
    method = ScriptedMethod(ScriptedConfig())  # stop = "fixed"
    out = method.unlearn(model, task.view({"forget"}))  # no val: the fixed rule must not read it
    assert method.run_info == {"steps": STEPS, "stop_reason": "fixed", "guard_acted": 0, "unchanged": False}
    assert out.progress.item() == 1.0


def test_the_guard_restores_the_best_state_bit_identical_and_stops(trained):
    model, task = trained
    # Every other input breaks after step 3, long before D_f looks unseen: the guard acts at
    # the second check below its floor (steps 4 and 6) and the closest earlier state comes back.
    method = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=2, stop_tolerance=0.0, harm_after=3))
    out = method.unlearn(model, task, seed=0)
    info = method.run_info
    assert info["stop_reason"] == "guard" and info["guard_acted"] == 1 and info["steps"] == 6
    best = info["stop_step"]
    assert best in (0, 2)
    for k, v in method.states[best].items():
        assert torch.equal(out.state_dict()[k], v), k


def test_a_dip_that_recovers_by_the_next_check_does_not_stop_the_run(trained):
    model, task = trained
    # Every other input is broken at step 4 only; checks every 2 steps see it once.
    method = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=2, harm_after=3, harm_until=4))
    method.unlearn(model, task, seed=0)
    assert method.run_info["guard_acted"] == 0 and method.run_info["stop_reason"] == "target"
    assert any(c.guard_acc < method.monitor.guard_floor for c in method.monitor.history)  # the dip was seen
    # ... while with no patience the same dip stops the run.
    strict = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=2, harm_after=3, harm_until=4, guard_patience=1))
    strict.unlearn(model, task, seed=0)
    assert strict.run_info["stop_reason"] == "guard" and strict.run_info["steps"] == 4


def test_rewind_runs_the_budget_and_returns_the_closest_checkpoint(trained):
    model, task = trained
    method = ScriptedMethod(ScriptedConfig(stop="rewind", stop_every=5))
    out = method.unlearn(model, task, seed=0)
    checks = method.monitor.history
    assert method.run_info["steps"] == STEPS and method.run_info["stop_reason"] == "rewind"
    closest = min(checks, key=lambda c: c.distance)
    assert method.run_info["stop_step"] == closest.step
    assert all(torch.equal(out.state_dict()[k], v) for k, v in method.states[closest.step].items())
    assert sorted({c.step for c in checks}) == list(range(0, STEPS + 1, 5))


def test_rewind_after_a_non_finite_loss_returns_the_closest_state_checked_before_it(trained):
    model, task = trained
    method = ScriptedMethod(ScriptedConfig(stop="rewind", stop_every=5, diverge_at=23))
    out = method.unlearn(model, task, seed=0)
    checks = method.monitor.history
    assert sorted(c.step for c in checks) == [0, 5, 10, 15, 20]  # nothing after the divergence
    closest = min(checks, key=lambda c: c.distance)
    assert method.run_info == {"steps": 22, "stop_reason": "diverged", "guard_acted": 0, "stop_step": closest.step, "unchanged": False}
    assert all(torch.equal(out.state_dict()[k], v) for k, v in method.states[closest.step].items())
    assert not out.training


@pytest.mark.parametrize("stop", ["fixed", "calibrated"])
def test_other_rules_report_a_non_finite_loss_as_an_error(trained, stop):
    model, task = trained
    # stop_tolerance 0: calibrated has not met its target by step 3
    method = ScriptedMethod(ScriptedConfig(stop=stop, stop_every=1, stop_tolerance=0.0, diverge_at=3))
    with pytest.raises(uk.DivergenceError, match="scripted: loss became nan at step 3"):
        method.unlearn(model, task, seed=0)


def test_a_stop_rule_reads_val_but_never_test_or_an_undeclared_part(trained):
    model, task = trained
    fixed = ScriptedMethod(ScriptedConfig())
    calibrated = ScriptedMethod(ScriptedConfig(stop="calibrated"))
    assert fixed.reads == {"forget"} and calibrated.reads == {"forget", "val"}
    view = task.view(calibrated.reads, who="scripted")
    calibrated.unlearn(model, view, seed=0)
    assert view.accessed == {"forget", "val"}
    with pytest.raises(uk.DataAccessError):
        ScriptedMethod(ScriptedConfig(stop="calibrated")).unlearn(model, task.view({"forget"}), seed=0)


def test_class_forgetting_targets_zero_accuracy_on_the_removed_class(trained):
    model, _ = trained  # the same original: the train split depends on the seed only
    task = _task("class:1")
    method = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=1, stop_tolerance=3.0, generalise=True))
    method.unlearn(model, task, seed=0)
    start = method.monitor.history[0]
    assert start.reference_acc == 0.0  # a model that never saw class 1 cannot predict it
    assert start.forget_acc > 50.0
    assert method.run_info["stop_reason"] == "target"
    assert method.monitor.history[-1].forget_acc <= 3.0 + method.monitor.tolerance


def test_stop_settings_are_validated():
    with pytest.raises(uk.ConfigError, match=r"\$\.stop: must be one of"):
        uk.structure_config(ScriptedConfig, {"stop": "early"})
    assert attrs.fields_dict(ScriptedConfig)["stop"].default == "fixed"


def test_guard_acted_counts_the_checks_at_which_the_guard_acted(trained):
    """`guard_acted` (formerly `guard`, documented as checks where the guard failed) counts the
    checks at which held-out accuracy had been below the floor `guard_patience` times in a row."""
    model, task = trained
    # every other input breaks after step 3: checks at 4, 6, ..., 40 are below the floor (19),
    # and from the second of them (step 6) on the guard acts: 18 checks
    method = ScriptedMethod(ScriptedConfig(stop="rewind", stop_every=2, stop_tolerance=0.0, harm_after=3))
    method.unlearn(model, task, seed=0)
    below = [c.step for c in method.monitor.history if c.guard_acc < method.monitor.guard_floor]
    assert below == list(range(4, STEPS + 1, 2))
    assert method.run_info["guard_acted"] == len(below) - 1 and method.run_info["stop_step"] in (0, 2)
    assert "guard" not in method.run_info


def test_the_stopping_docs_name_every_field_a_run_records(trained):
    from pathlib import Path

    model, task = trained
    section = (Path(__file__).parents[1] / "docs/stopping.md").read_text().split("## What the results record", 1)[1]
    section = section.split("\n## ", 1)[0]
    method = ScriptedMethod(ScriptedConfig(stop="calibrated", stop_every=2, stop_tolerance=0.0, harm_after=3))
    method.unlearn(model, task, seed=0)
    for key in method.run_info:
        assert f"`{key}` (" in section, key
    assert "guard failed" not in section  # it counts where the guard acted
