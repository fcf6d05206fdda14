"""The contract every `unlearnkit.Sampler` must pass (see its docstring).

    from unlearnkit.testing.contracts import parametrize_with_checks

    @parametrize_with_checks("sampler", ["my-sampler"])
    def test_my_sampler_contract(name, check):
        check(name)

Each check builds the registered sampler by name with its default config, prepares it on the
accessible retain pool of `trained_tiny_model()`'s task (or a random part of it) with that
trained model, and queries it with support batches from the task's forget set; hypothesis
draws pool parts, support batches, k and generator seeds, derandomized so a run is
reproducible.
"""

from __future__ import annotations

from typing import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from unlearnkit.core.registry import get_sampler
from unlearnkit.data.tasks import UnlearningTask
from unlearnkit.testing import trained_tiny_model

__all__ = [
    "CHECKS",
    "check_returns_min_k_distinct_positions",
    "check_never_draws_the_forget_set",
    "check_same_seed_same_positions",
    "check_prepare_and_sample_mutate_nothing",
]

_SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, database=None, report_multiple_bugs=False, suppress_health_check=list(HealthCheck)
)


def _support(task: UnlearningTask, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.tensor(sorted(set(positions)), dtype=torch.long)
    return task.forget.x[index], task.forget.y[index]


def _supports(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size - 1), min_size=1, max_size=16)


def _query(
    name: str, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module,
    support_x: torch.Tensor, support_y: torch.Tensor, k: int, seed: int,
) -> torch.Tensor:
    sampler = get_sampler(name)
    sampler.prepare(pool_x, pool_y, model)
    return sampler.sample(support_x, support_y, k, torch.Generator().manual_seed(seed))


def _assert_positions(name: str, positions: object, k: int, pool_size: int) -> None:
    assert isinstance(positions, torch.Tensor), f"{name}: sample returned {type(positions).__name__}, expected a tensor"
    assert positions.dtype == torch.long, f"{name}: positions are {positions.dtype}, expected torch.long"
    assert positions.dim() == 1, f"{name}: positions have shape {tuple(positions.shape)}, expected 1-D"
    want = min(k, pool_size)
    assert len(positions) == want, f"{name}: {len(positions)} positions for k={k} and a pool of {pool_size}, expected {want}"
    assert len(torch.unique(positions)) == len(positions), f"{name}: repeated positions {positions.tolist()}"
    if len(positions):
        low, high = int(positions.min()), int(positions.max())
        assert 0 <= low and high < pool_size, f"{name}: positions {low}..{high} outside the pool [0, {pool_size})"


def check_returns_min_k_distinct_positions(name: str) -> None:
    """Exactly min(k, len(pool)) distinct long positions in [0, len(pool)), for any pool, support and k."""
    model, task = trained_tiny_model()
    pool_size = len(task.retain)

    @_SETTINGS
    @given(
        st.integers(1, pool_size), st.integers(0, 2**31 - 1), _supports(len(task.forget)),
        st.one_of(st.integers(0, 8), st.integers(0, pool_size + 20)), st.integers(0, 2**31 - 1),
    )
    def run(size: int, pool_seed: int, support: list[int], k: int, seed: int) -> None:
        part = torch.randperm(pool_size, generator=torch.Generator().manual_seed(pool_seed))[:size].sort().values
        support_x, support_y = _support(task, support)
        positions = _query(name, task.retain.x[part], task.retain.y[part], model, support_x, support_y, k, seed)
        _assert_positions(name, positions, k, size)

    run()


def check_never_draws_the_forget_set(name: str) -> None:
    """Prepared on the task's D̂_r, no position maps (through `task.retain.indices`) into D_f."""
    model, task = trained_tiny_model()
    pool_size = len(task.retain)
    forget = set(task.forget.indices.tolist())

    @_SETTINGS
    @given(_supports(len(task.forget)), st.integers(1, pool_size), st.integers(0, 2**31 - 1))
    def run(support: list[int], k: int, seed: int) -> None:
        support_x, support_y = _support(task, support)
        positions = _query(name, task.retain.x, task.retain.y, model, support_x, support_y, k, seed)
        _assert_positions(name, positions, k, pool_size)
        drawn = set(task.retain.indices[positions.cpu()].tolist())
        assert not drawn & forget, f"{name}: drew forget-set samples {sorted(drawn & forget)}"

    run()


def check_same_seed_same_positions(name: str) -> None:
    """The same generator seed gives the same positions: on one prepared sampler, on a fresh one, whatever the global RNG."""
    model, task = trained_tiny_model()

    @_SETTINGS
    @given(_supports(len(task.forget)), st.integers(0, len(task.retain) + 5), st.integers(0, 2**31 - 1))
    def run(support: list[int], k: int, seed: int) -> None:
        support_x, support_y = _support(task, support)
        sampler = get_sampler(name)
        sampler.prepare(task.retain.x, task.retain.y, model)
        results = []
        with torch.random.fork_rng(devices=[]):
            for global_seed in (1, 2):
                torch.manual_seed(global_seed)
                results.append(sampler.sample(support_x, support_y, k, torch.Generator().manual_seed(seed)))
        results.append(_query(name, task.retain.x, task.retain.y, model, support_x, support_y, k, seed))
        for other in results[1:]:
            assert torch.equal(results[0], other), f"{name}: seed {seed} gave {results[0].tolist()} and then {other.tolist()}"

    run()


def check_prepare_and_sample_mutate_nothing(name: str) -> None:
    """`prepare` and `sample` leave the model (parameters, buffers, mode, flags) and every input tensor unchanged."""
    _, task = trained_tiny_model()

    @_SETTINGS
    @given(_supports(len(task.forget)), st.integers(0, 40), st.integers(0, 2**31 - 1), st.booleans())
    def run(support: list[int], k: int, seed: int, training: bool) -> None:
        model, _ = trained_tiny_model()
        model.train(training)
        state = {key: value.clone() for key, value in model.state_dict().items()}
        flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
        pool_x, pool_y = task.retain.x.clone(), task.retain.y.clone()
        support_x, support_y = _support(task, support)
        copies = [t.clone() for t in (pool_x, pool_y, support_x, support_y)]
        sampler = get_sampler(name)
        sampler.prepare(pool_x, pool_y, model)
        sampler.sample(support_x, support_y, k, torch.Generator().manual_seed(seed))
        for label, now, then in zip(("pool_x", "pool_y", "support_x", "support_y"), (pool_x, pool_y, support_x, support_y), copies):
            assert torch.equal(now, then), f"{name}: {label} was modified"
        after = model.state_dict()
        assert after.keys() == state.keys(), f"{name}: the model's state keys changed"
        for key, value in state.items():
            assert torch.equal(after[key], value), f"{name}: the model's {key} was modified"
        now_flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
        assert now_flags == flags, f"{name}: the model's train/eval mode or requires_grad flags changed"
        assert all(p.grad is None for p in model.parameters()), f"{name}: gradients were left on the model"

    run()


CHECKS: list[Callable[[str], None]] = [
    check_returns_min_k_distinct_positions,
    check_never_draws_the_forget_set,
    check_same_seed_same_positions,
    check_prepare_and_sample_mutate_nothing,
]
