"""Retrain: exact unlearning by training a fresh model on the remaining set (the gold model)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

import unlearnkit as uk
from unlearnkit import config_class

from unlearnkit_baselines._common import reinitialize


@config_class
class RetrainConfig:
    """Retrain has no settings: it repeats the original model's recipe (`task.recipe`) on D_r."""


class Retrain(uk.Unlearner):
    """Train a freshly initialised model of the same architecture on all of D_r.

    The input model only lends its architecture: a copy is re-initialised with `seed` (see
    `reinitialize`; for the built-in `mlp` and `cnn1d` this equals
    `unlearnkit.build_model(name, task, seed=seed)`) and trained with the original recipe and
    augmentation on `task.retain_full`, as `unlearnkit.train_model(..., seed=seed)` does. It
    reads all of D_r whatever the task's `retain_access`: the gold model is defined on D_r.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"retain_full"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        fresh = reinitialize(model, seed)
        return uk.train_model(
            fresh, task.retain_full, recipe=task.recipe, augment=task.augment, seed=seed,
            device=device, progress=progress, who="retrain",
        )

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """Nothing to tune: Retrain is the reference every gap is measured against (the original recipe on D_r)."""
        return {}
