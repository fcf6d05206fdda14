"""Vectors the nearest-neighbour samplers compare: inputs, penultimate features, softmax outputs.

The samplers prepared with the same original model share one frozen copy of it
(`shared_original`), which remembers its outputs per input row (and for the last batch it was
asked for): the `feature-nn` and `label-nn` queries of one support batch cost one forward pass,
their pool caches one pass over the pool, and a forget sample seen in an earlier LTU iteration
none.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
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


#: What identifies an input row: its dtype, its shape (without the batch dimension), a digest of its bytes.
RowKey = tuple[torch.dtype, tuple[int, ...], bytes]


def row_keys(x: torch.Tensor) -> list[RowKey]:
    """The key of each row of a non-empty `x`: rows with the same bytes but another dtype or shape differ."""
    raw = x.detach().cpu().contiguous().reshape(len(x), -1).view(torch.uint8).numpy()  # any dtype, as bytes
    shape = tuple(x.shape[1:])
    return [(x.dtype, shape, hashlib.blake2b(row.tobytes(), digest_size=16).digest()) for row in raw]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bytes of `t`: compared as bits, NaN matches NaN and -0.0 differs from 0.0."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def _state(model: nn.Module) -> dict[tuple[str, str], torch.Tensor]:
    """Every parameter and every buffer of `model`, persistent or not, by kind and name."""
    return {("parameter", n): p for n, p in model.named_parameters()} | {("buffer", n): b for n, b in model.named_buffers()}


class FrozenOriginal:
    """A frozen copy of the original model that remembers its outputs (penultimate features,
    logits) per input row, so that a row it has embedded before costs a lookup, not a forward.

    The copy never changes, so its outputs are a function of the input: LTU's samplers embed
    the same support batch once for `feature-nn` and `label-nn`, and each forget sample once
    per run rather than once per pass over D_f. A row is identified by its dtype, shape and
    bytes. At most `max_rows` rows are remembered, each in memory of its own (the oldest are
    dropped first); besides them, the outputs for the last batch asked for are kept whole, so
    that samplers preparing on the same pool embed it once however large it is.
    """

    max_rows = 1 << 15

    def __init__(self, model: nn.Module):
        self.model = frozen_copy(model)
        self.device = uk.resolve_device(None, self.model) if next(self.model.parameters(), None) is not None else torch.device("cpu")
        self._rows: dict[RowKey, tuple[torch.Tensor, torch.Tensor]] = {}
        self._last: tuple[list[RowKey], torch.Tensor, torch.Tensor] | None = None

    def copies(self, model: nn.Module) -> bool:
        """Whether this holds a copy of `model` in its current state: the same parameters and
        buffers (persistent or not), by name, dtype, shape, device and bits."""
        mine, theirs = _state(self.model), _state(model)
        return mine.keys() == theirs.keys() and all(
            a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and torch.equal(_bits(a), _bits(b))
            for a, b in ((mine[k], theirs[k]) for k in mine)
        )

    @torch.no_grad()
    def outputs(self, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and logits of a non-empty `x`, in forward passes of `batch_size`
        unless every row was embedded before. [choice] One new row re-embeds the whole of `x`,
        so a row's output never depends on which rows happened to be new with it."""
        keys = row_keys(x)
        if self._last is not None and self._last[0] == keys:
            return self._last[1], self._last[2]
        if all(key in self._rows for key in keys):
            outputs = [self._rows[key] for key in keys]
            features, logits = torch.stack([f for f, _ in outputs]), torch.stack([z for _, z in outputs])
        else:
            parts = [uk.features_and_logits(self.model, x[i : i + batch_size].to(self.device)) for i in range(0, len(x), batch_size)]
            features, logits = (torch.cat(p) for p in zip(*parts))
            self._remember(keys, features, logits)
        self._last = (keys, features, logits)
        return features, logits

    def _remember(self, keys: list[RowKey], features: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep a copy of each of the newest `max_rows` rows (not a view: the batch is not kept
        alive) as the newest entries, and drop the oldest entries beyond `max_rows`."""
        for i in range(max(0, len(keys) - self.max_rows), len(keys)):
            self._rows.pop(keys[i], None)
            self._rows[keys[i]] = (features[i].clone(), logits[i].clone())
        for stale in list(itertools.islice(self._rows, max(0, len(self._rows) - self.max_rows))):
            del self._rows[stale]


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
