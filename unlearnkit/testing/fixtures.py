"""pytest fixtures shipped with unlearnkit (loaded through the `pytest11` entry point)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from unlearnkit.core.plugins import registry


@pytest.fixture
def register_component() -> Iterator[Callable[..., Any]]:
    """`register_component(kind, name, factory, config_cls)` registers in-process for one test."""
    added: list[tuple[str, str]] = []

    def register(kind: str, name: str, factory: Callable[..., Any], config_cls: type) -> Any:
        entry = registry.register(kind, name, factory, config_cls)
        added.append((kind, name))
        return entry

    yield register
    for kind, name in added:
        registry.unregister(kind, name)
