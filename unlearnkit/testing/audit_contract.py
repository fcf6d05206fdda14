"""The contract every per-example privacy audit must pass (see `unlearnkit.Audit`).

    from unlearnkit.testing.contracts import parametrize_with_checks

    @parametrize_with_checks("audit", ["my-audit"])
    def test_my_audit_contract(name, check):
        check(name)

Each check builds the audit with `uk.get_audit(name)` (its default config) and runs it on
synthetic populations (`synthetic_populations`): Gaussian logits whose true-class logit the
method raises by `shift` on the examples it should have forgotten.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import numpy as np

import unlearnkit as uk
from unlearnkit.core.access import AUDIT_POPULATIONS, PopulationView
from unlearnkit.core.errors import DataAccessError
from unlearnkit.data.populations import RepeatedPopulation, ShadowPopulation

__all__ = ["CHECKS", "synthetic_populations"]

EXAMPLES, CLASSES = 12, 4


def synthetic_populations(models: int, *, examples: int = EXAMPLES, classes: int = CLASSES, shift: float = 0.0,
                          seed: int = 0) -> dict[str, Any]:
    """Both populations for `models` models (even): N(0, 1) logits, the true class raised by 2,
    and by `shift` more under the unlearned models (`repeated`) and the models that forgot the
    example (`shadow`, complementary pairs as `unlearnkit.data.populations.shadow_halves` draws)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=examples)

    def logits(raise_by: Any) -> np.ndarray:
        z = rng.normal(size=(models, examples, classes))
        z[:, np.arange(examples), labels] += 2.0 + raise_by
        return z

    first = rng.random((models // 2, examples)) < 0.5
    forgot = np.empty((models, examples), dtype=bool)
    forgot[0::2], forgot[1::2] = first, ~first
    accuracy = {"RA": 99.0, "TA": 95.0}
    return {
        "repeated": RepeatedPopulation(unlearned_logits=logits(shift), retrained_logits=logits(0.0), labels=labels,
                                       unlearned_accuracy=accuracy, retrained_accuracy=accuracy),
        "shadow": ShadowPopulation(logits=logits(shift * forgot), labels=labels, forgot=forgot),
    }


def _models(audit: uk.Audit) -> int:
    return max(8, audit.min_models + audit.min_models % 2)


def _run(name: str, populations: dict[str, Any]) -> uk.AuditResult:
    audit = uk.get_audit(name)
    view = PopulationView(populations, audit.reads, who=name)
    try:
        return audit.run(view)
    except DataAccessError as exc:
        raise AssertionError(f"{name}: {exc}") from None


# -- checks -----------------------------------------------------------------------------------


def check_declarations(name: str) -> None:
    """An `Audit` that declares the populations it reads, its fewest models and its headline."""
    audit = uk.get_audit(name)
    assert isinstance(audit, uk.Audit), f"{name}: {type(audit).__name__} is not an Audit"
    assert audit.reads and set(audit.reads) <= set(AUDIT_POPULATIONS), \
        f"{name}: reads={sorted(audit.reads)} must be a non-empty subset of {AUDIT_POPULATIONS}"
    assert isinstance(audit.min_models, int) and audit.min_models >= 2, f"{name}: min_models must be an integer >= 2, got {audit.min_models!r}"
    assert isinstance(audit.headline, tuple) and all(isinstance(h, str) for h in audit.headline), \
        f"{name}: headline must be a tuple of summary names, got {audit.headline!r}"


def check_result_shape(name: str) -> None:
    """Finite float summary figures (the headline among them, the same names for any input) and
    one finite value per example in every per-example array."""
    audit = uk.get_audit(name)
    results = [_run(name, synthetic_populations(_models(audit), shift=s, seed=s)) for s in (0, 3)]
    for result in results:
        assert isinstance(result, uk.AuditResult), f"{name}: run returned {type(result).__name__}, not an AuditResult"
        assert set(audit.headline) <= set(result.summary), f"{name}: summary lacks headline figures {set(audit.headline) - set(result.summary)}"
        for key, value in result.summary.items():
            assert isinstance(value, float) and np.isfinite(value), f"{name}: summary[{key!r}] = {value!r} is not a finite float"
        assert result.per_example, f"{name}: no per-example values"
        for key, values in result.per_example.items():
            values = np.asarray(values)
            assert values.shape == (EXAMPLES,), f"{name}: per_example[{key!r}] has shape {values.shape}, expected ({EXAMPLES},)"
            assert np.issubdtype(values.dtype, np.floating) and np.isfinite(values).all(), f"{name}: per_example[{key!r}] not finite floats"
    assert set(results[0].summary) == set(results[1].summary), f"{name}: summary names depend on the input"
    assert set(results[0].per_example) == set(results[1].per_example), f"{name}: per-example names depend on the input"


def check_reads_only_declared(name: str) -> None:
    """`run` succeeds when it is handed only the populations it declares."""
    audit = uk.get_audit(name)
    populations = synthetic_populations(_models(audit))
    _run(name, {k: v for k, v in populations.items() if k in audit.reads})


def check_deterministic_and_pure(name: str) -> None:
    """Two runs on the same populations agree exactly, and the populations are unchanged."""
    audit = uk.get_audit(name)
    populations = synthetic_populations(_models(audit), shift=1.0)
    before = {k: {f: np.copy(v) for f, v in _arrays(p).items()} for k, p in populations.items()}
    first, second = _run(name, populations), _run(name, populations)
    assert first.summary == second.summary, f"{name}: two runs differ: {first.summary} vs {second.summary}"
    for key in first.per_example:
        assert np.array_equal(first.per_example[key], second.per_example[key]), f"{name}: per_example[{key!r}] differs between runs"
    for k, p in populations.items():
        for f, v in _arrays(p).items():
            assert np.array_equal(before[k][f], v), f"{name}: modified {k}.{f}"


def check_rejects_bad_inputs(name: str) -> None:
    """NaN logits, and fewer models than `min_models`, raise a ValueError."""
    audit = uk.get_audit(name)
    populations = synthetic_populations(_models(audit))
    poisoned = {}
    for key, pop in populations.items():
        changes = {}
        for field, value in _arrays(pop).items():
            if field.endswith("logits"):
                changes[field] = np.array(value)
                changes[field][0, 0, 0] = np.nan
        poisoned[key] = attrs.evolve(pop, **changes)
    _expect_value_error(name, poisoned, "NaN logits")
    few = audit.min_models - 1 - (audit.min_models - 1) % 2  # the largest even count below min_models (shadow models pair up)
    if few >= 2:
        _expect_value_error(name, synthetic_populations(few), f"{few} models (min_models {audit.min_models})")
    one = {k: attrs.evolve(p, **{f: v[:1] for f, v in _arrays(p).items() if f != "labels"}) for k, p in populations.items()}
    _expect_value_error(name, one, "1 model")


def _arrays(population: Any) -> dict[str, np.ndarray]:
    return {a.name: getattr(population, a.name) for a in attrs.fields(type(population))
            if isinstance(getattr(population, a.name), np.ndarray)}


def _expect_value_error(name: str, populations: dict[str, Any], what: str) -> None:
    try:
        _run(name, populations)
    except ValueError:
        return
    raise AssertionError(f"{name}: accepted {what} without a ValueError")


CHECKS: list[Callable[[str], None]] = [
    check_declarations,
    check_result_shape,
    check_reads_only_declared,
    check_deterministic_and_pure,
    check_rejects_bad_inputs,
]
