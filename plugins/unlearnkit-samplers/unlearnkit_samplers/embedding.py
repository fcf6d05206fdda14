"""Vectors the nearest-neighbour samplers compare: inputs, penultimate features, softmax outputs.

The samplers prepared with the same original model share one frozen copy of it
(`shared_original`), which remembers its outputs for the last inputs it embedded: the
`feature-nn` and `label-nn` queries of one support batch then cost one forward pass, and
their pool caches one pass over the pool.
"""

from __future__ import annotations

import copy
import weakref
from typing import Callable

import torch
from torch import nn

import unlearnkit as uk

#: The embeddings a sampler may compare, and whether each needs the original model.
EMBEDDINGS = {"input": False, "penultimate": True, "softmax": True}


def frozen_copy(model: nn.Module) -> nn.Module:
    """A private, evaluation-mode, gradient-free copy of `model`: later updates to `model` do not reach it."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class FrozenOriginal:
    """A frozen copy of the original model with its (penultimate features, logits) for the last
    inputs embedded, so that asking again for the same inputs costs no forward pass."""

    def __init__(self, model: nn.Module):
        self.model = frozen_copy(model)
        self.device = uk.resolve_device(None, self.model) if next(self.model.parameters(), None) is not None else torch.device("cpu")
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def copies(self, model: nn.Module) -> bool:
        """Whether this holds a copy of `model` in its current state."""
        mine, theirs = self.model.state_dict(), model.state_dict()
        return mine.keys() == theirs.keys() and all(
            a.shape == b.shape and a.device == b.device and torch.equal(a, b) for a, b in zip(mine.values(), theirs.values())
        )

    @torch.no_grad()
    def outputs(self, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and logits of a non-empty `x`, in forward passes of `batch_size`."""
        last = self._last
        if last is not None and last[0].shape == x.shape and last[0].device == x.device and torch.equal(last[0], x):
            return last[1], last[2]
        parts = [uk.features_and_logits(self.model, x[i : i + batch_size].to(self.device)) for i in range(0, len(x), batch_size)]
        features, logits = (torch.cat(p) for p in zip(*parts))
        self._last = (x.detach().clone(), features, logits)
        return features, logits


_SHARED: weakref.WeakKeyDictionary[nn.Module, FrozenOriginal] = weakref.WeakKeyDictionary()


def shared_original(model: nn.Module) -> FrozenOriginal:
    """The `FrozenOriginal` of `model` as it is now, shared by every caller until the model changes."""
    original = _SHARED.get(model)
    if original is None or not original.copies(model):
        original = _SHARED[model] = FrozenOriginal(model)
    return original


def embedder(kind: str, model: nn.Module | None, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function mapping a non-empty batch of inputs to one float32 row per sample for `kind`
    (on the original model's device; `input` rows stay where the inputs are)."""
    if kind == "input":
        return lambda x: x.reshape(len(x), -1).float()
    if model is None:
        raise uk.UsageError(f"the {kind!r} embedding needs the original model; pass it to prepare() or choose another setting")
    original = shared_original(model)
    if kind == "penultimate":
        return lambda x: original.outputs(x, batch_size)[0].float()
    if kind == "softmax":
        return lambda x: torch.softmax(original.outputs(x, batch_size)[1].float(), dim=1)
    raise uk.UsageError(f"unknown embedding {kind!r}; expected one of {', '.join(EMBEDDINGS)}")
