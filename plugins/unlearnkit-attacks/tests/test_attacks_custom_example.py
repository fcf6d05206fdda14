"""A user's own attack plugs in by name: the example plugin under examples/custom-attack."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

import unlearnkit as uk
from unlearnkit.testing import checks_for_kind, trained_tiny_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom-attack"


@pytest.fixture
def registered(register_component, monkeypatch):
    """The example's own hook, run with the in-process registration fixture; returns its attack module."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in [m for m in sys.modules if m.startswith("unlearnkit_logit_margin")]:
        monkeypatch.delitem(sys.modules, name)
    plugin = importlib.import_module("unlearnkit_logit_margin.plugin")
    plugin.unlearnkit_register_attacks(register=lambda name, factory, cls: register_component("attack", name, factory, cls))
    return importlib.import_module("unlearnkit_logit_margin.attack")


def test_example_declares_its_entry_point_and_uses_only_the_public_api():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["unlearnkit"] == {"logit-margin": "unlearnkit_logit_margin.plugin"}
    for source in (EXAMPLE / "unlearnkit_logit_margin").glob("*.py"):
        assert "unlearnkit._" not in source.read_text() and "unlearnkit_attacks" not in source.read_text(), source


@pytest.mark.parametrize("check", checks_for_kind("attack"), ids=lambda c: c.__name__)
def test_contract(registered, check):
    check("logit-margin")


def test_the_margin_is_the_true_logit_minus_the_largest_other(registered):
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    assert torch.equal(registered.margin(logits, torch.tensor([0, 2])), torch.tensor([1.0, -4.0]))


def test_evaluation_uses_it_by_name(registered):
    model, task = trained_tiny_model()
    metrics = uk.evaluate(model, task, attack="logit-margin")
    assert 0 <= metrics["MIA"] <= 100
    attack = uk.get_attack("logit-margin", steps=5)
    assert isinstance(attack, registered.LogitMargin) and attack.config.steps == 5
    with pytest.raises(uk.ConfigError, match="steps: must be > 0, got 0"):
        uk.get_attack("logit-margin", steps=0)
