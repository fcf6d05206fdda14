"""Both audits of this plugin pass unlearnkit's audit contract suite."""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit.testing.contracts import parametrize_with_checks

AUDITS = ["epsilon", "ulira"]


def test_the_plugin_registers_its_audits() -> None:
    assert set(AUDITS) <= set(uk.list_audits())
    assert {n: sorted(uk.get_audit(n).reads) for n in AUDITS} == {"epsilon": ["repeated"], "ulira": ["shadow"]}


@parametrize_with_checks("audit", AUDITS)
def test_audit_contract(name, check):
    check(name)
