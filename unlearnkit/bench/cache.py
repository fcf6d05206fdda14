"""Trained models (the bench's original and Retrain) cached on disk by what determines them.

A cached model is an ordinary unlearnkit checkpoint at `root / f"{kind}-{hash}.pt"`, where the
hash covers `{"kind": kind, **key}`; the bench's keys are the ones it has always used, so caches
written before this module existed stay valid. The first process to need a model trains it
while holding an exclusive lock beside the checkpoint; any other process asking for the same
key waits on that lock and then loads what the first one wrote.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unlearnkit.bench.locks import exclusive_lock
from unlearnkit.core.config import config_hash
from unlearnkit.core.errors import CheckpointError
from unlearnkit.engine import distributed
from unlearnkit.engine.checkpoint import load_checkpoint, save_checkpoint


class ModelCache:
    """Trained models keyed by configuration, safe to share between processes."""

    def __init__(self, root: str | Path, *, writable: bool = True) -> None:
        self.root = Path(root)
        self.writable = writable

    def path(self, kind: str, key: dict) -> Path:
        """Where the model of `kind` with configuration `key` is (or would be) cached."""
        return self.root / f"{kind}-{config_hash({'kind': kind, **key})}.pt"

    def get_or_train(
        self,
        kind: str,
        key: dict,
        *,
        build: Callable[[], nn.Module],
        train: Callable[[], nn.Module],
        meta: dict,
        device: str | torch.device = "cpu",
    ) -> tuple[nn.Module, dict]:
        """The model cached under (`kind`, `key`), loaded into `build()`, and its metadata.

        When no valid checkpoint is cached, `train()` runs exactly once across processes and
        its model is saved (atomically) with `meta` plus `kind` and `train_seconds`. A file
        that is truncated, tampered with, of another kind or of another shape is never loaded:
        it is trained anew and replaced. A cache made with `writable=False` (torchrun ranks
        other than 0) never writes nor locks; under torchrun every rank loads or trains as
        rank 0 decided, so they train together when it trains.
        """
        path = self.path(kind, key)
        found = self._load(path, kind, build)
        missing = self.writable and found is None
        with exclusive_lock(path.with_name(path.name + ".lock")) if missing else contextlib.nullcontext():
            if missing:
                found = self._load(path, kind, build)  # written by the process we waited for
            if distributed.broadcast_object(found is None):  # under torchrun every rank does what rank 0 found
                found = self._train(path if self.writable else None, kind, train, meta)
            elif found is None:  # rank 0 found it (after waiting for its writer); this rank did not yet
                found = self._load(path, kind, build)
        if found is None:
            raise CheckpointError(f"the cached {kind} model {str(path)!r} that rank 0 found cannot be read on this rank")
        model, stored = found
        return model.to(device).eval(), stored

    @staticmethod
    def _load(path: Path, kind: str, build: Callable[[], nn.Module]) -> tuple[nn.Module, dict] | None:
        if not path.is_file():
            return None
        try:
            state, meta = load_checkpoint(path)
        except CheckpointError:
            return None
        if meta.get("kind") != kind or "train_seconds" not in meta:
            return None
        model = build()
        try:
            model.load_state_dict(state)
        except RuntimeError:  # the model's definition changed since the file was written
            return None
        return model, meta

    def _train(self, path: Path | None, kind: str, train: Callable[[], nn.Module], meta: dict) -> tuple[nn.Module, dict]:
        from unlearnkit.core import __version__

        start = time.perf_counter()
        model = train()
        stored = {**meta, "kind": kind, "train_seconds": time.perf_counter() - start}
        if path is not None:
            save_checkpoint(path, model, stored)
        return model, {**stored, "unlearnkit_version": __version__}
