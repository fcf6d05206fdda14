"""Vectors the nearest-neighbour samplers compare: inputs, penultimate features, softmax outputs."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

import unlearnkit as uk

#: The embeddings a sampler may compare, and whether each needs the original model.
EMBEDDINGS = {"input": False, "penultimate": True, "softmax": True}


def frozen_copy(model: nn.Module) -> nn.Module:
    """A private, evaluation-mode, gradient-free copy of `model`: later updates to `model` do not reach it."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def embedder(kind: str, model: nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function mapping a batch of inputs to one float32 row per sample for `kind`."""
    if kind == "input":
        return lambda x: x.reshape(len(x), -1).float()
    if model is None:
        raise uk.UsageError(f"the {kind!r} embedding needs the original model; pass it to prepare() or choose another setting")
    if kind == "penultimate":
        return lambda x: uk.penultimate_features(model, x).float()
    if kind == "softmax":
        return lambda x: torch.softmax(model(x).float(), dim=1)
    raise uk.UsageError(f"unknown embedding {kind!r}; expected one of {', '.join(EMBEDDINGS)}")


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """`fn` applied to a non-empty `x` in batches of `batch_size` on `device`, rows concatenated."""
    return torch.cat([fn(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
