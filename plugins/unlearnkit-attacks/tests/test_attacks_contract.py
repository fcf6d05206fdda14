"""Every attack of this plugin passes unlearnkit's attack contract suite."""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit.testing.contracts import parametrize_with_checks

ATTACKS = [
    "svc-confidence", "svc-entropy", "svc-m-entropy", "svc-prob", "svc-correctness",
    "loss-threshold", "mi-logreg", "mi-mlp-sorted", "mi-mlp-label",
]


def test_the_plugin_registers_its_attacks_with_their_kind() -> None:
    assert set(ATTACKS) <= set(uk.list_attacks())
    assert {n for n in ATTACKS if uk.get_attack(n).differentiable} == {"mi-logreg", "mi-mlp-sorted", "mi-mlp-label"}


@parametrize_with_checks("attack", ATTACKS)
def test_attack_contract(name, check):
    check(name)
