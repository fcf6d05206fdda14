"""The contract every `unlearnkit.GradientCombiner` must pass (see its docstring).

    from unlearnkit.testing.contracts import parametrize_with_checks

    @parametrize_with_checks("combiner", ["my-combiner"])
    def test_my_combiner_contract(name, check):
        check(name)

Each check builds the registered combiner by name with its default config and feeds it random
gradient lists drawn by hypothesis (shapes, dtypes, scales, signs, conflicting or aligned
pairs, zero and tiny vectors), derandomized so a run is reproducible. A stateful combiner is
`reset()` before every comparison.
"""

from __future__ import annotations

from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearnkit.core.registry import get_combiner

__all__ = [
    "CHECKS",
    "check_keeps_shapes_and_dtypes",
    "check_leaves_inputs_untouched",
    "check_result_does_not_alias_inputs",
    "check_finite_on_zero_and_tiny_vectors",
    "check_scale_covariant",
    "check_repeatable_after_reset",
]

_SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, report_multiple_bugs=False, suppress_health_check=list(HealthCheck)
)
#: How the forget gradient relates to the remember gradient in a drawn pair.
_RELATIONS = ("independent", "conflicting", "aligned", "opposite", "orthogonal")

Gradients = list[torch.Tensor]


def _shapes() -> st.SearchStrategy[list[tuple[int, ...]]]:
    shape = st.lists(st.integers(0, 5), max_size=3).map(tuple)
    return st.lists(shape, min_size=1, max_size=4)


def _make_pair(shapes: list[tuple[int, ...]], seed: int, relation: str, scale_r: float, scale_f: float) -> tuple[Gradients, Gradients]:
    """Two float64 gradient lists of the given shapes, the second related to the first by `relation`."""
    g = torch.Generator().manual_seed(seed)
    remember = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    noise = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    if relation == "independent":
        forget = noise
    elif relation == "conflicting":
        forget = [-0.8 * r + 0.6 * n for r, n in zip(remember, noise)]
    elif relation == "aligned":
        forget = [0.8 * r + 0.6 * n for r, n in zip(remember, noise)]
    elif relation == "opposite":
        forget = [-r.clone() for r in remember]
    else:  # orthogonal: remove the component of the noise along the remember gradient
        rr = sum(float((r * r).sum()) for r in remember)
        nr = sum(float((n * r).sum()) for r, n in zip(remember, noise))
        forget = [n - (nr / rr) * r if rr > 0 else n for r, n in zip(remember, noise)]
    return [scale_r * r for r in remember], [scale_f * f for f in forget]


@st.composite
def gradient_pairs(draw: st.DrawFn, dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)) -> tuple[Gradients, Gradients]:
    """Pairs of gradient lists with random shapes, dtype, scales (1e-3..1e3), signs and relation."""
    shapes = draw(_shapes())
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    relation = draw(st.sampled_from(_RELATIONS))
    scale_r = draw(st.sampled_from([1.0, -1.0])) * 10 ** draw(st.floats(-3, 3))
    scale_f = draw(st.sampled_from([1.0, -1.0])) * 10 ** draw(st.floats(-3, 3))
    remember, forget = _make_pair(shapes, seed, relation, scale_r, scale_f)
    return [r.to(dtype) for r in remember], [f.to(dtype) for f in forget]


def _combine(name: str, remember: Gradients, forget: Gradients) -> list[torch.Tensor]:
    combiner = get_combiner(name)
    combiner.reset()
    return combiner.combine(remember, forget)


def check_keeps_shapes_and_dtypes(name: str) -> None:
    """A new list with one tensor per input, each of the input's shape, dtype and device."""

    @_SETTINGS
    @given(gradient_pairs(dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64)))
    def run(pair: tuple[Gradients, Gradients]) -> None:
        remember, forget = pair
        out = _combine(name, remember, forget)
        assert isinstance(out, list), f"{name}: combine returned {type(out).__name__}, expected a list"
        assert out is not remember and out is not forget, f"{name}: combine returned an input list"
        assert len(out) == len(remember), f"{name}: {len(out)} tensors returned for {len(remember)} parameters"
        for i, (o, r) in enumerate(zip(out, remember)):
            assert isinstance(o, torch.Tensor), f"{name}: item {i} is a {type(o).__name__}"
            assert o.shape == r.shape, f"{name}: item {i} has shape {tuple(o.shape)}, expected {tuple(r.shape)}"
            assert o.dtype == r.dtype, f"{name}: item {i} is {o.dtype}, expected {r.dtype}"
            assert o.device == r.device, f"{name}: item {i} is on {o.device}, expected {r.device}"
            assert torch.isfinite(o).all(), f"{name}: item {i} is not finite for finite inputs"

    run()


def check_leaves_inputs_untouched(name: str) -> None:
    """`combine` modifies neither input list nor any tensor in them."""

    @_SETTINGS
    @given(gradient_pairs())
    def run(pair: tuple[Gradients, Gradients]) -> None:
        remember, forget = pair
        ids = [id(t) for t in remember], [id(t) for t in forget]
        before = [t.clone() for t in remember], [t.clone() for t in forget]
        _combine(name, remember, forget)
        assert ([id(t) for t in remember], [id(t) for t in forget]) == ids, f"{name}: combine changed an input list"
        for which, now, then in (("g_remember", remember, before[0]), ("g_forget", forget, before[1])):
            for i, (a, b) in enumerate(zip(now, then)):
                assert torch.equal(a, b), f"{name}: combine modified {which}[{i}]"

    run()


def check_result_does_not_alias_inputs(name: str) -> None:
    """Writing into the result (as an optimizer may) leaves both inputs unchanged."""

    @_SETTINGS
    @given(gradient_pairs())
    def run(pair: tuple[Gradients, Gradients]) -> None:
        remember, forget = pair
        before = [t.clone() for t in remember], [t.clone() for t in forget]
        for o in _combine(name, remember, forget):
            o.add_(1.0)
        for which, now, then in (("g_remember", remember, before[0]), ("g_forget", forget, before[1])):
            for i, (a, b) in enumerate(zip(now, then)):
                assert torch.equal(a, b), f"{name}: the result shares memory with {which}[{i}]"

    run()


def check_finite_on_zero_and_tiny_vectors(name: str) -> None:
    """Zero and tiny (1e-30) gradients, alone or with a normal one, give a finite result."""
    cases = [(0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (1e-30, 1.0), (1.0, 1e-30), (1e-30, 1e-30)]

    @_SETTINGS
    @given(_shapes(), st.integers(0, 2**31 - 1), st.sampled_from(_RELATIONS), st.sampled_from(cases), st.sampled_from([torch.float32, torch.float64]))
    def run(shapes: list[tuple[int, ...]], seed: int, relation: str, scales: tuple[float, float], dtype: torch.dtype) -> None:
        remember, forget = _make_pair(shapes, seed, relation, *scales)
        remember, forget = [r.to(dtype) for r in remember], [f.to(dtype) for f in forget]
        for i, o in enumerate(_combine(name, remember, forget)):
            assert torch.isfinite(o).all(), f"{name}: item {i} not finite for scales {scales} ({relation}, {dtype})"

    run()


def check_scale_covariant(name: str) -> None:
    """combine(c·g_r, c·g_f) ≈ c·combine(g_r, g_f) for every c > 0."""

    @_SETTINGS
    @given(gradient_pairs(), st.floats(-3, 3))
    def run(pair: tuple[Gradients, Gradients], log_c: float) -> None:
        remember, forget = pair
        c = 10.0**log_c
        scaled = _combine(name, [c * r for r in remember], [c * f for f in forget])
        plain = _combine(name, remember, forget)
        dtype = remember[0].dtype
        peak = max([float(t.abs().max()) for t in remember + forget if t.numel()] or [0.0])
        rtol = 1e-4 if dtype == torch.float32 else 1e-9
        for i, (s, p) in enumerate(zip(scaled, plain)):
            torch.testing.assert_close(
                s, c * p, rtol=rtol, atol=rtol * c * peak,
                msg=lambda m, i=i: f"{name}: combine(c·g_r, c·g_f) != c·combine(g_r, g_f) at item {i}, c={c}: {m}",
            )

    run()


def check_repeatable_after_reset(name: str) -> None:
    """After `reset()`, the same sequence of calls gives bitwise the same results."""

    @_SETTINGS
    @given(st.lists(gradient_pairs(), min_size=1, max_size=3))
    def run(pairs: list[tuple[Gradients, Gradients]]) -> None:
        shapes = [t.shape for t in pairs[0][0]]
        pairs = [p for p in pairs if [t.shape for t in p[0]] == shapes]
        combiner = get_combiner(name)
        combiner.reset()
        first = [combiner.combine(r, f) for r, f in pairs]
        combiner.reset()
        second = [combiner.combine(r, f) for r, f in pairs]
        for step, (a, b) in enumerate(zip(first, second)):
            for i, (x, y) in enumerate(zip(a, b)):
                assert torch.equal(x, y), f"{name}: call {step + 1} after reset() differs at item {i}"

    run()


CHECKS: list[Callable[[str], None]] = [
    check_keeps_shapes_and_dtypes,
    check_leaves_inputs_untouched,
    check_result_does_not_alias_inputs,
    check_finite_on_zero_and_tiny_vectors,
    check_scale_covariant,
    check_repeatable_after_reset,
]
