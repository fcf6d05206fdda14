"""Registers the audits of unlearnkit-audit with unlearnkit."""

from __future__ import annotations

from unlearnkit import Register, hookimpl


@hookimpl
def unlearnkit_register_audits(register: Register) -> None:
    from unlearnkit_audit.audits import EpsilonAudit, EpsilonConfig, UliraAudit, UliraConfig

    register("epsilon", EpsilonAudit, EpsilonConfig)
    register("ulira", UliraAudit, UliraConfig)
