"""feature-nn and label-nn against brute-force nearest neighbours written with Python loops."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.testing import trained_tiny_model

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def cosine_distance(p: list[float], s: list[float]) -> float:
    norm_p, norm_s = math.sqrt(sum(v * v for v in p)), math.sqrt(sum(v * v for v in s))
    if norm_p == 0 or norm_s == 0:
        return 1.0
    return 1.0 - sum(a * b for a, b in zip(p, s)) / (norm_p * norm_s)


def squared_l2(p: list[float], s: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(p, s))


def brute_force(pool: list[list[float]], support: list[list[float]], k: int, metric: str, rank: list[int]) -> tuple[list[int], list[float]]:
    """The k pool rows with the smallest distance to their nearest support row; ties by `rank`."""
    distance = cosine_distance if metric == "cosine" else squared_l2
    scores = []
    for p in pool:
        best = math.inf
        for s in support:
            best = min(best, distance(p, s))
        scores.append(best)
    order = sorted(range(len(pool)), key=lambda i: (scores[i], rank[i]))
    return order[: min(k, len(pool))], scores


def tie_ranks(n: int, seed: int, tie_break: str) -> list[int]:
    """Each pool position's rank among equals: its place in the generator's permutation, or itself."""
    if tie_break == "position":
        return list(range(n))
    rank = [0] * n
    for place, position in enumerate(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()):
        rank[position] = place
    return rank


def one_by_one(fn, x: torch.Tensor) -> list[list[float]]:
    """fn applied to each sample on its own, as float64 Python lists."""
    rows = []
    for i in range(len(x)):
        with torch.no_grad():
            rows.append(fn(x[i : i + 1])[0].double().tolist())
    return rows


@PROPERTY
@given(
    st.integers(1, 40), st.sampled_from([3, 70]), st.integers(1, 5), st.integers(0, 45),
    st.integers(0, 2**31 - 1), st.sampled_from(["random", "position"]),
)
def test_l2_on_inputs_matches_brute_force_exactly_including_ties(n, dim, b, k, seed, tie_break):
    """Small-integer vectors: every distance is exact, so positions must match one for one (both l2 code paths)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randint(0, 3, (n, dim), generator=g).float()
    support = torch.randint(0, 3, (b, dim), generator=g).float()
    sampler = uk.get_sampler("feature-nn", features="input", metric="l2", tie_break=tie_break)
    sampler.prepare(pool, torch.zeros(n, dtype=torch.long), None)
    got = sampler.sample(support, torch.zeros(b, dtype=torch.long), k, torch.Generator().manual_seed(seed))
    want, _ = brute_force(pool.double().tolist(), support.double().tolist(), k, "l2", tie_ranks(n, seed, tie_break))
    assert got.tolist() == want


def assert_nearest(got: torch.Tensor, want: list[int], scores: list[float], tol: float) -> None:
    """`got` is a valid answer: the same length, and no left-out row is nearer than a chosen one (beyond `tol`)."""
    got = got.tolist()
    assert len(got) == len(want) and len(set(got)) == len(got)
    chosen = [scores[i] for i in got]
    left_out = [scores[i] for i in range(len(scores)) if i not in set(got)]
    if left_out and chosen:
        assert max(chosen) <= min(left_out) + tol
    assert all(a <= b + tol for a, b in zip(chosen, chosen[1:])), "not ordered nearest first"
    gap_free = [i for i in want if scores[i] < scores[want[-1]] - tol] if want else []
    assert set(gap_free) <= set(got), "a clearly nearer row was left out"


@pytest.mark.parametrize(
    ("name", "config", "embedding"),
    [
        ("feature-nn", {}, "penultimate"),
        ("feature-nn", {"metric": "l2"}, "penultimate"),
        ("feature-nn", {"features": "input"}, "input"),
        ("label-nn", {}, "softmax"),
        ("label-nn", {"metric": "cosine", "tie_break": "position"}, "softmax"),
    ],
)
def test_matches_brute_force_on_a_trained_model(name, config, embedding):
    model, task = trained_tiny_model()
    pool_x = task.retain.x
    fn = {
        "penultimate": lambda x: uk.penultimate_features(model, x),
        "input": lambda x: x.reshape(len(x), -1),
        "softmax": lambda x: torch.softmax(model(x), dim=1),
    }[embedding]
    pool = one_by_one(fn, pool_x)
    metric = config.get("metric", "cosine" if name == "feature-nn" else "l2")
    tie_break = config.get("tie_break", "random")
    sampler = uk.get_sampler(name, **config)
    sampler.prepare(pool_x, task.retain.y, model)

    @PROPERTY
    @given(st.lists(st.integers(0, len(task.forget) - 1), min_size=1, max_size=8, unique=True), st.integers(0, len(pool) + 3), st.integers(0, 2**31 - 1))
    def check_matches_brute_force(support_positions, k, seed):
        index = torch.tensor(support_positions)
        support_x, support_y = task.forget.x[index], task.forget.y[index]
        got = sampler.sample(support_x, support_y, k, torch.Generator().manual_seed(seed))
        want, scores = brute_force(pool, one_by_one(fn, support_x), k, metric, tie_ranks(len(pool), seed, tie_break))
        assert_nearest(got, want, scores, tol=1e-5)

    check_matches_brute_force()


def test_exact_ties_follow_the_generator_or_the_pool_position():
    """Duplicated pool rows are tied; `position` keeps pool order, `random` the generator's permutation."""
    row = torch.tensor([[1.0, 2.0, 3.0]])
    pool = torch.cat([torch.tensor([[9.0, 9.0, -9.0]]), row.repeat(6, 1)])
    y = torch.zeros(len(pool), dtype=torch.long)
    for metric in ("cosine", "l2"):
        by_position = uk.get_sampler("feature-nn", features="input", metric=metric, tie_break="position")
        by_position.prepare(pool, y, None)
        assert by_position.sample(row, y[:1], 3, torch.Generator().manual_seed(0)).tolist() == [1, 2, 3]
        shuffled = uk.get_sampler("feature-nn", features="input", metric=metric)
        shuffled.prepare(pool, y, None)
        draws = {tuple(shuffled.sample(row, y[:1], 6, torch.Generator().manual_seed(s)).tolist()) for s in range(5)}
        assert all(sorted(d) == [1, 2, 3, 4, 5, 6] for d in draws)
        assert len(draws) > 1, "random tie-breaking should depend on the generator"


def test_a_zero_feature_vector_is_at_cosine_distance_one():
    pool = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    sampler = uk.get_sampler("feature-nn", features="input", tie_break="position")
    sampler.prepare(pool, torch.zeros(3, dtype=torch.long), None)
    assert sampler.sample(torch.tensor([[1.0, 0.0]]), torch.zeros(1, dtype=torch.long), 3, torch.Generator()).tolist() == [2, 0, 1]


def test_the_nearest_batch_rule_uses_the_closest_support_sample():
    """A pool row next to any support row ranks before one that is middling to all of them."""
    pool = torch.tensor([[0.0, 5.0], [10.0, 0.1], [5.0, 1.0]])  # nearest: 25, 0.01, 26; mean: 75, 50.01, 26
    support = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    sampler = uk.get_sampler("feature-nn", features="input", metric="l2")
    sampler.prepare(pool, torch.zeros(3, dtype=torch.long), None)
    assert sampler.sample(support, torch.zeros(2, dtype=torch.long), 3, torch.Generator()).tolist() == [1, 0, 2]
