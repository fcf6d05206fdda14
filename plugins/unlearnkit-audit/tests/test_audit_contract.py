"""Both audits of this plugin pass unlearnkit's audit contract suite."""

from __future__ import annotations

import numpy as np
import pytest

import unlearnkit as uk
from unlearnkit.testing.audit_contract import (check_deterministic_and_pure, check_reads_only_declared, check_rejects_bad_inputs,
                                               check_result_shape)
from unlearnkit.testing.contracts import parametrize_with_checks
from unlearnkit_audit.audits import EpsilonConfig

AUDITS = ["epsilon", "ulira"]


def test_the_plugin_registers_its_audits() -> None:
    assert set(AUDITS) <= set(uk.list_audits())
    assert {n: sorted(uk.get_audit(n).reads) for n in AUDITS} == {"epsilon": ["repeated"], "ulira": ["shadow"]}


@parametrize_with_checks("audit", AUDITS)
def test_audit_contract(name, check):
    check(name)


# -- the suite catches what it promises to catch ----------------------------------------------

class _ReadsUndeclared(uk.Audit):
    reads = frozenset({"repeated"})

    def run(self, populations):
        populations.shadow  # not declared
        return uk.AuditResult(summary={}, per_example={"x": np.zeros(12)})


class _Random(uk.Audit):
    reads = frozenset({"repeated"})

    def run(self, populations):
        examples = populations.repeated.labels.shape[0]
        return uk.AuditResult(summary={"F": float(np.random.rand())}, per_example={"x": np.zeros(examples)})


class _WrongLength(uk.Audit):
    reads = frozenset({"repeated"})

    def run(self, populations):
        return uk.AuditResult(summary={"F": 0.5}, per_example={"x": np.zeros(3)})


@pytest.mark.parametrize(("audit", "check", "message"), [
    (_ReadsUndeclared, check_reads_only_declared, "read the 'shadow' population but declares reads=\\['repeated'\\]"),
    (_Random, check_deterministic_and_pure, "two runs differ"),
    (_WrongLength, check_result_shape, "per_example\\['x'\\] has shape \\(3,\\), expected \\(12,\\)"),
    (_WrongLength, check_rejects_bad_inputs, "accepted NaN logits without a ValueError"),
])
def test_the_suite_catches_a_broken_audit(register_component, audit, check, message):
    register_component("audit", "broken", audit, EpsilonConfig)
    with pytest.raises(AssertionError, match=message):
        check("broken")
