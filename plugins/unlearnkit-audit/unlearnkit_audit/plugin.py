"""Registers the audits of unlearnkit-audit with unlearnkit."""

from __future__ import annotations

from unlearnkit import Register, hookimpl, hookspecs

# An unlearnkit from before the `audit` kind has no hook for audits: the plugin then registers
# nothing (and, being importable there, stays out of its plugin-failure report).
if hasattr(hookspecs, "unlearnkit_register_audits"):

    @hookimpl
    def unlearnkit_register_audits(register: Register) -> None:
        from unlearnkit_audit.audits import EpsilonAudit, EpsilonConfig, UliraAudit, UliraConfig

        register("epsilon", EpsilonAudit, EpsilonConfig)
        register("ulira", UliraAudit, UliraConfig)
