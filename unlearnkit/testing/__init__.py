"""What a plugin author needs to test a component: tiny tasks and models, an in-process
registration fixture (`register_component`, a pytest fixture available wherever unlearnkit is
installed), and the contract suites every sampler, combiner, attack, unlearner and audit must pass.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from unlearnkit.core.registry import build_model
from unlearnkit.data.datasets import ArrayDataset
from unlearnkit.data.recipe import TrainConfig
from unlearnkit.data.tasks import UnlearningTask, make_task
from unlearnkit.engine.training import train_model

__all__ = ["tiny_task", "tiny_model", "trained_tiny_model", "state_equal", "checks_for_kind"]


def checks_for_kind(kind: str) -> list:
    """The contract checks of `kind` (see `unlearnkit.testing.contracts`)."""
    from unlearnkit.testing.contracts import checks_for

    return checks_for(kind)


def tiny_task(seed: int = 0, forget: str = "random:0.1", retain_access: float = 0.5, **dataset_config: Any) -> UnlearningTask:
    """A 400-sample, 4-class, 16-feature Gaussian task that loads instantly."""
    return make_task("synthetic", forget=forget, retain_access=retain_access, seed=seed, dataset_config=dataset_config or None)


def tiny_model(task: UnlearningTask, seed: int = 0, hidden: int = 32) -> nn.Module:
    """An untrained small MLP for `task`."""
    return build_model("mlp", task, seed=seed, hidden=hidden)


@functools.lru_cache(maxsize=4)
def _trained_state(seed: int, hidden: int) -> tuple[dict[str, torch.Tensor], UnlearningTask]:
    task = tiny_task(seed)
    model = train_model(tiny_model(task, seed, hidden), task, seed=seed)
    return {k: v.clone() for k, v in model.state_dict().items()}, task


def trained_tiny_model(seed: int = 0, hidden: int = 32) -> tuple[nn.Module, UnlearningTask]:
    """A small MLP trained on `tiny_task(seed)` (cached per process), and that task."""
    state, task = _trained_state(seed, hidden)
    model = tiny_model(task, seed, hidden)
    model.load_state_dict(state)
    return model.eval(), task


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold exactly the same parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)
