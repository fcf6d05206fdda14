"""The contract suites, one module per component kind, run by pytest parametrization.

    from unlearnkit.testing.contracts import parametrize_with_checks

    @parametrize_with_checks("sampler", ["my-sampler"])
    def test_my_sampler_contract(name, check):
        check(name)

Each kind's module (`unlearner_contract`, `attack_contract`, `sampler_contract`,
`combiner_contract`, `audit_contract`) lists its checks in `CHECKS`: functions `check_xxx(name) -> None` that
build the registered component by name and raise `AssertionError` on a breach.
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterable

import pytest

MODULES = {
    "unlearner": "unlearnkit.testing.unlearner_contract",
    "attack": "unlearnkit.testing.attack_contract",
    "sampler": "unlearnkit.testing.sampler_contract",
    "combiner": "unlearnkit.testing.combiner_contract",
    "audit": "unlearnkit.testing.audit_contract",
}


def checks_for(kind: str) -> list[Callable[[str], None]]:
    """The contract checks of one component kind."""
    if kind not in MODULES:
        raise ValueError(f"no contract suite for kind {kind!r}; expected one of {', '.join(MODULES)}")
    return list(importlib.import_module(MODULES[kind]).CHECKS)


def parametrize_with_checks(kind: str, names: Iterable[str]) -> pytest.MarkDecorator:
    """A pytest parametrization over (name, check) for every check of `kind` and every name."""
    cases = [(name, check) for name in names for check in checks_for(kind)]
    ids = [f"{name}-{check.__name__}" for name, check in cases]
    return pytest.mark.parametrize(("name", "check"), cases, ids=ids)
