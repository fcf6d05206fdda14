"""The attack contract suite catches broken attacks: each check fails on an attack that breaks
the rule it guards (so passing it means something)."""

from __future__ import annotations

import attrs
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.testing import attack_contract as contract
from unlearnkit.testing import state_equal


@uk.config_class
class NoConfig:
    pass


class _Base(uk.MembershipAttack):
    def fit(self, members, non_members):
        return self

    def predict_proba(self, logits, labels):
        return torch.sigmoid(F.cross_entropy(logits.detach(), labels, reduction="none").neg() + 1.0)


class Constant(_Base):
    def predict_proba(self, logits, labels):
        return torch.full((len(logits),), 0.5)


class OutOfRange(_Base):
    def predict_proba(self, logits, labels):
        return 2 * super().predict_proba(logits, labels)


class WrongShape(_Base):
    def predict_proba(self, logits, labels):
        return super().predict_proba(logits, labels)[:, None]


class ReturnsNone(_Base):
    def fit(self, members, non_members):
        return None


class Mutates(_Base):
    def fit(self, members, non_members):
        members[0].clamp_(-1, 1)  # "clips outliers" in place
        return self


class Noisy(_Base):
    def predict_proba(self, logits, labels):
        return (super().predict_proba(logits, labels) + 0.01 * torch.rand(len(logits))).clamp(0, 1)


class Drifts(_Base):
    """Scores drop with every call: the second of two unseen halves looks like non-members."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = 0

    def predict_proba(self, logits, labels):
        self.calls += 1
        return torch.full((len(logits),), 1.0 / (1 + self.calls))


class NaiveLog(_Base):
    """log(1 − p_y) without care: −inf, then NaN gradients, where p_y rounds to 1."""

    differentiable = True

    def predict_proba(self, logits, labels):
        p = torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
        return torch.sigmoid(-torch.log(1 - p) - 3.0)


class TrainableLeak(_Base):
    """Its own weight still requires grad: a loss on it would train the MI model too."""

    differentiable = True

    def __init__(self, config):
        super().__init__(config)
        self.weight = nn.Parameter(torch.ones(()))

    def predict_proba(self, logits, labels):
        return torch.sigmoid(self.weight * F.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1) + 2.0)


class ClaimsGradientsButDetaches(_Base):
    differentiable = True


class LeaksGraph(_Base):
    def predict_proba(self, logits, labels):
        return torch.sigmoid(logits[:, 0])


CASES = [
    (Constant, "check_separates_memorised_members", "AUC 0.500"),
    (OutOfRange, "check_predict_proba_shape_and_range", r"leaves \[0, 1\]"),
    (WrongShape, "check_predict_proba_shape_and_range", "has shape"),
    (ReturnsNone, "check_fit_returns_self", "returned None"),
    (Mutates, "check_does_not_mutate_inputs", "member logits were modified"),
    (Noisy, "check_deterministic", "two fits with the same config differ"),
    (Drifts, "check_chance_on_unseen_data", "two halves of unseen test data"),
    (NaiveLog, "check_gradients", "non-finite gradient|not finite"),
    (TrainableLeak, "check_gradients", "leaves besides the logits"),
    (ClaimsGradientsButDetaches, "check_gradients", "returns no graph"),
    (LeaksGraph, "check_gradients", "not differentiable, but predict_proba returns a graph"),
]


@pytest.mark.parametrize(("cls", "check_name", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_the_check_guarding_a_rule_fails_on_an_attack_that_breaks_it(register_component, cls, check_name, message) -> None:
    name = f"broken-{cls.__name__.lower()}"
    register_component("attack", name, cls, NoConfig)
    check = getattr(contract, check_name)
    assert check in contract.CHECKS
    with pytest.raises(AssertionError, match=message):
        check(name)


def test_a_sound_attack_passes_every_check(register_component) -> None:
    register_component("attack", "sound-loss", _Base, NoConfig)
    for check in contract.CHECKS:
        check("sound-loss")


def test_memorised_model_is_a_fresh_copy_of_a_model_that_memorised() -> None:
    a, task = contract.memorised_model()
    b, _ = contract.memorised_model()
    assert a is not b and attrs.has(type(task.recipe))
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not state_equal(a, b)
    logits = contract.memorised_logits()
    assert uk.accuracy(*logits["retain_full"]) == 100.0
    assert uk.accuracy(*logits["test"]) < 90.0
