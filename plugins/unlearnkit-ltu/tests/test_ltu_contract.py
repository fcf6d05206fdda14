"""`ltu` passes the shipped unlearner contract suite."""

from __future__ import annotations

from unlearnkit.testing.contracts import parametrize_with_checks


@parametrize_with_checks("unlearner", ["ltu"])
def test_ltu_unlearner_contract(name, check):
    check(name)
