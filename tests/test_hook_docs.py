"""Every hook is documented in docs/hooks.md with its exact signature (datasette's habit)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from unlearnkit.core import hookspecs
from unlearnkit.core.plugins import KIND_HOOKS

DOC = (Path(__file__).parents[1] / "docs" / "hooks.md").read_text()
HOOKS = [name for name, obj in vars(hookspecs).items() if name.startswith("unlearnkit_register_") and callable(obj)]


def test_every_kind_has_a_hook():
    assert sorted(HOOKS) == sorted(KIND_HOOKS.values())


@pytest.mark.parametrize("name", HOOKS)
def test_hook_documented_with_exact_signature(name):
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    signature = f"{name}({params}) -> {sig.return_annotation}"
    assert f"### {name}" in DOC, f"docs/hooks.md lacks a section for {name}"
    assert signature in DOC, f"docs/hooks.md must show the signature `{signature}`"


def test_no_documented_hook_is_missing_from_the_specs():
    documented = set(re.findall(r"^### (unlearnkit_\w+)", DOC, flags=re.M))
    assert documented == set(HOOKS)
