"""Every iterative baseline drives the core's stop rule: the right budget, every step checked, honest reads."""

from __future__ import annotations

import pytest

import unlearnkit as uk
from unlearnkit.engine.stopping import StopMonitor
from unlearnkit.testing import trained_tiny_model
from unlearnkit_baselines.plugin import BASELINES

ITERATIVE = sorted(name for name, (_, config_cls) in BASELINES.items() if issubclass(config_cls, uk.StopSettings))


def _short(name: str) -> dict:
    """The settings the contract suite runs `name` with on the tiny task (its defaults, or shorter)."""
    return getattr(BASELINES[name][0], "contract_config", {})


def test_the_later_baselines_are_iterative():
    assert {"neggrad-plus", "scrub", "l1-sparse", "sfron"} <= set(ITERATIVE)


@pytest.mark.parametrize("name", ITERATIVE)
def test_the_monitor_is_told_the_number_of_steps_the_loop_takes(monkeypatch, name):
    budgets, checks = [], []
    init, check = StopMonitor.__init__, StopMonitor.check

    def init_spy(self, *args, total_steps, **kwargs):
        budgets.append(total_steps)
        init(self, *args, total_steps=total_steps, **kwargs)

    def check_spy(self, model, step):
        checks.append(step)
        return check(self, model, step)

    monkeypatch.setattr(StopMonitor, "__init__", init_spy)
    monkeypatch.setattr(StopMonitor, "check", check_spy)
    model, task = trained_tiny_model()
    unlearner = uk.get_unlearner(name, **{**_short(name), "stop": "fixed"})
    unlearner.unlearn(model, task)
    assert checks == list(range(1, budgets[0] + 1))
    stops = {k: v for k, v in unlearner.run_info.items() if k != "resolved"}  # "resolved": the rule's settings
    assert stops == {"steps": budgets[0], "stop_reason": "fixed", "guard_acted": 0, "unchanged": False}


@pytest.mark.parametrize("name", ITERATIVE)
@pytest.mark.parametrize("rule", ["calibrated", "rewind"])
def test_a_stop_rule_reads_only_declared_parts_and_reports_where_it_stopped(name, rule):
    model, task = trained_tiny_model()
    unlearner = uk.get_unlearner(name, stop=rule, stop_every=3, **_short(name))
    assert {"forget", "val"} <= unlearner.reads
    view = task.view(unlearner.reads, who=name)
    unlearner.unlearn(model, view)
    assert set(view.accessed) <= unlearner.reads
    info = unlearner.run_info
    assert info["stop_reason"] in ({"target", "crossed", "guard", "budget"} if rule == "calibrated" else {"rewind"})
    assert 0 <= info["stop_step"] <= info["steps"]
