"""The model populations per-example audits read, and how they are drawn.

An audit (`unlearnkit.Audit`) sees, for one unlearning method, the outputs of many models on
the task's forget set D_f (E examples):

- `repeated` — the NeurIPS 2023 challenge's protocol: one original model trained on the
  training split (seed s), N runs of the method from it (unlearning seeds s + 100 000 + u) and
  N Retrain models trained on D_r (seeds s + 1 + r). `RepeatedPopulation`.
- `shadow` — U-LiRA's: N shadow originals (seeds s + 200 000 + i), each trained on a random
  half of the training split that holds half of D_f, and unlearned (seeds s + 300 000 + i)
  on that half of D_f; the other half it never saw. Models come in complementary pairs
  (`shadow_halves`), so each example of D_f is forgotten by exactly N / 2 models and never
  seen by the other N / 2. `ShadowPopulation`.

`PopulationView` (from `unlearnkit.core.access`) hands an audit only the populations it declares in
`Audit.reads`.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch

from unlearnkit.core.access import PopulationView
from unlearnkit.core.errors import UsageError
from unlearnkit.data.tasks import UnlearningTask

__all__ = ["MAX_MODELS", "SEEDS", "PopulationView", "RepeatedPopulation", "ShadowPopulation", "positions_in_train",
           "shadow_halves", "shadow_task"]

#: Seed offsets of the populations' model streams (added to the task seed).
SEEDS = {"retrain": 1, "unlearn": 100_000, "shadow": 200_000, "shadow-unlearn": 300_000}
MAX_MODELS = 99_999  # keeps the streams apart


def _frozen(array: Any, dtype: Any) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@attrs.frozen
class RepeatedPopulation:
    """N runs of a method from one original, and N Retrain models: their logits on D_f
    (`[N, E, classes]`), D_f's labels (`[E]`), and each group's mean accuracies in %
    (`{"RA": on D_r, "TA": on test}`)."""

    unlearned_logits: np.ndarray = attrs.field(converter=lambda a: _frozen(a, np.float32))
    retrained_logits: np.ndarray = attrs.field(converter=lambda a: _frozen(a, np.float32))
    labels: np.ndarray = attrs.field(converter=lambda a: _frozen(a, np.int64))
    unlearned_accuracy: dict = attrs.field(converter=dict)
    retrained_accuracy: dict = attrs.field(converter=dict)

    def __attrs_post_init__(self) -> None:
        _check_logits(self.unlearned_logits, self.labels, "unlearned_logits")
        _check_logits(self.retrained_logits, self.labels, "retrained_logits")


@attrs.frozen
class ShadowPopulation:
    """N shadow models' logits on D_f (`[N, E, classes]`), D_f's labels, and `forgot`
    (`[N, E]`, bool): True where the model trained on the example and then unlearned it,
    False where it never trained on it."""

    logits: np.ndarray = attrs.field(converter=lambda a: _frozen(a, np.float32))
    labels: np.ndarray = attrs.field(converter=lambda a: _frozen(a, np.int64))
    forgot: np.ndarray = attrs.field(converter=lambda a: _frozen(a, bool))

    def __attrs_post_init__(self) -> None:
        _check_logits(self.logits, self.labels, "logits")
        if self.forgot.shape != self.logits.shape[:2]:
            raise ValueError(f"forgot has shape {self.forgot.shape}; expected {self.logits.shape[:2]} (models, examples)")


def _check_logits(logits: np.ndarray, labels: np.ndarray, name: str) -> None:
    if logits.ndim != 3 or labels.shape != (logits.shape[1],):
        raise ValueError(f"{name} must be [models, examples, classes] with labels [examples]; got {logits.shape} and {labels.shape}")


def positions_in_train(task: UnlearningTask, part: str) -> np.ndarray:
    """Positions in `task.train` of the samples of `task.<part>` (a subset of it)."""
    train = task.train.indices.numpy()
    wanted = getattr(task, part).indices.numpy()
    order = np.argsort(train, kind="stable")
    found = order[np.searchsorted(train, wanted, sorter=order)]
    if not np.array_equal(train[found], wanted):
        raise ValueError(f"task.{part} is not a subset of task.train")
    return found


def shadow_halves(task: UnlearningTask, models: int) -> np.ndarray:
    """Which training samples each shadow model trains on: bool `[models, len(task.train)]`.

    Models 2k and 2k + 1 split D_r and D_f in complementary random halves (NumPy generator
    seeded with (task seed, k)), so each holds half of each (model 2k the smaller half when a
    size is odd) and every sample is in exactly one model of each pair.
    """
    if models < 2 or models % 2:
        raise UsageError(f"the shadow population needs an even number of models, got {models}")
    forget = positions_in_train(task, "forget")
    retain = positions_in_train(task, "retain_full")
    member = np.zeros((models, len(task.train)), dtype=bool)
    for pair in range(models // 2):
        rng = np.random.default_rng([task.seed, pair])
        for part in (retain, forget):
            drawn = rng.permutation(part)
            member[2 * pair, drawn[: len(part) // 2]] = True
            member[2 * pair + 1, drawn[len(part) // 2 :]] = True
    return member


def shadow_task(task: UnlearningTask, member: np.ndarray, retain_access: float, seed: int) -> UnlearningTask:
    """`task` restricted to one shadow model's half (`member`, bool over `task.train`): its
    train split is the half, D_f the half's forget samples, D_r the rest, and D̂_r a random
    `retain_access` share of that D_r (drawn with `seed`)."""
    in_forget = np.zeros(len(task.train), dtype=bool)
    in_forget[positions_in_train(task, "forget")] = True
    train = task.train.subset(torch.from_numpy(np.nonzero(member)[0]))
    forget = task.train.subset(torch.from_numpy(np.nonzero(member & in_forget)[0]))
    retain_full = task.train.subset(torch.from_numpy(np.nonzero(member & ~in_forget)[0]))
    n_access = max(1, int(round(retain_access * len(retain_full))))
    access = torch.randperm(len(retain_full), generator=torch.Generator().manual_seed(seed))[:n_access].sort().values
    return attrs.evolve(task, train=train, forget=forget, retain_full=retain_full, retain=retain_full.subset(access),
                        retain_access=float(retain_access))
