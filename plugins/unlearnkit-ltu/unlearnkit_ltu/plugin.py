"""Registers the `ltu` unlearner with unlearnkit (entry point `unlearnkit` → `ltu`)."""

from __future__ import annotations

from unlearnkit import Register, hookimpl

from unlearnkit_ltu.config import LtuConfig
from unlearnkit_ltu.unlearner import LtuUnlearner


@hookimpl
def unlearnkit_register_unlearners(register: Register) -> None:
    register("ltu", LtuUnlearner, LtuConfig)
