"""Relabelling baselines: RandL (SalUn's `RL`) and Amnesiac unlearning (Graves et al.)."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Iterator, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import non_negative, one_of, positive
from unlearnkit import config_class

from unlearnkit_baselines._common import (
    Batch, concat, epochs, fit, recipe_batch, recipe_lr, relabelled, sgd, steps_per_epoch, uniform_labels, wrong_labels,
)

MIXES = ("shuffled", "forget-first")


def random_label_batches(
    forget: uk.ArrayDataset,
    retain: uk.ArrayDataset,
    num_classes: int,
    *,
    mix: str,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    balanced: bool = False,
) -> Iterator[Batch]:
    """One epoch of RL batches: D_f with fresh uniform random labels, and D̂_r with its own.

    `mix="shuffled"` shuffles both into one set (SalUn's CIFAR-100 / Tiny-ImageNet branch, and
    the LTU paper's "fine-tune with the updated dataset"); `mix="forget-first"` makes a pass
    over the relabelled D_f, then one over D̂_r (SalUn's CIFAR-10 / SVHN branch). `balanced` as
    in `uk.batches` (for BatchNorm models).
    """
    forget = relabelled(forget, uniform_labels(len(forget), num_classes, generator))
    if mix == "shuffled":
        return uk.batches(concat(forget, retain), batch_size, generator=generator, device=device, balanced=balanced)
    first = uk.batches(forget, batch_size, generator=generator, device=device, balanced=balanced)
    return itertools.chain(first, uk.batches(retain, batch_size, generator=generator, device=device, balanced=balanced))


def random_label_steps(n_forget: int, n_retain: int, *, mix: str, batch_size: int) -> int:
    """Optimiser steps in one epoch of `random_label_batches`."""
    if mix == "shuffled":
        return steps_per_epoch(n_forget + n_retain, batch_size)
    return steps_per_epoch(n_forget, batch_size) + steps_per_epoch(n_retain, batch_size)


@config_class
class RandLConfig(uk.StopSettings):
    """SGD on D_f with random labels together with D̂_r (SalUn's `RL`).

    Reference: SalUn's `unlearn/RL.py` and its CIFAR-10 command (10 epochs, lr 0.01, momentum
    0.9, weight decay 5e-4, batch 256) on ResNet-18s trained at lr 0.1, batch 256. Rule: 10
    epochs; lr `LR_RATIO` (0.1) × the task recipe's lr and the recipe's batch (None = by rule).
    `mix` is how D_f and D̂_r meet (see `random_label_batches`); the LTU paper describes the
    shuffled union, the default.
    """

    LR_RATIO: ClassVar[float] = 0.1

    epochs: int = attrs.field(default=10, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    mix: str = attrs.field(default="shuffled", validator=one_of(*MIXES))


class RandomLabel(uk.Unlearner):
    """RandL: fine-tune on D_f relabelled uniformly at random (fresh labels every epoch) plus D̂_r.

    The random labels are drawn from all classes, the true one included, as SalUn's `RL` does.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        lr, batch_size = recipe_lr(task, cfg.LR_RATIO, cfg.lr), recipe_batch(task, 1.0, cfg.batch_size)
        optimizer = sgd(model, lr, cfg.momentum, cfg.weight_decay)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        total = cfg.epochs * random_label_steps(len(task.forget), len(task.retain), mix=cfg.mix, batch_size=batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "randl", progress):
            data = random_label_batches(
                task.forget, task.retain, task.num_classes, mix=cfg.mix, batch_size=batch_size,
                generator=generator, device=device, balanced=uk.has_batch_norm(model),
            )
            step = fit(model, optimizer, data, loss_fn, who="randl", step=step, augment=task.augment, generator=generator, monitor=monitor)
            if monitor.stopped:
                break
        model = monitor.finish(model.eval())
        self.run_info["resolved"] = {"lr": lr, "batch_size": batch_size}
        return model

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, how D_f and D̂_r meet (`mix`), and `epochs` (each a pass over both) within the budget."""
        mix = space.choice(trial, "mix", MIXES)
        return {**space.shared(trial), "mix": mix, "epochs": space.repeats(trial, "epochs", lambda c: c.forget + c.retain)}


@config_class
class AmnesiacConfig(uk.StopSettings):
    """Adam on D_f relabelled with wrong labels, shuffled with D̂_r.

    Reference: the SSD repository's `amnesiac` (`forget_random_strategies.py`): 3 epochs, Adam lr
    1e-4, batch 128 over D_r ∪ relabelled D_f, on originals trained at batch 64. Rule: its passes
    over the data (epochs) and its Adam lr as they are (Adam's step does not scale with the
    gradient, so it is not tied to the original's SGD recipe); the batch `BATCH_RATIO` (2) × the
    task recipe's (None = by rule).
    """

    BATCH_RATIO: ClassVar[float] = 2.0

    epochs: int = attrs.field(default=3, validator=positive)
    lr: float = attrs.field(default=1e-4, validator=positive)
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))


class Amnesiac(uk.Unlearner):
    """Amnesiac unlearning: train on D_f with random *incorrect* labels mixed with D̂_r.

    Each forget sample gets one label drawn uniformly from the other `num_classes - 1`
    classes, once for the whole run (Graves et al.; the SSD repository's implementation).
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        forget, batch_size = task.forget, recipe_batch(task, cfg.BATCH_RATIO, cfg.batch_size)
        self.run_info["resolved"] = {"batch_size": batch_size}
        data = concat(relabelled(forget, wrong_labels(forget.y, task.num_classes, generator)), task.retain)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        monitor = uk.StopMonitor(self, model, task, total_steps=cfg.epochs * steps_per_epoch(len(data), batch_size), seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "amnesiac", progress):
            batches = uk.batches(data, batch_size, generator=generator, device=device, balanced=uk.has_batch_norm(model))
            step = fit(model, optimizer, batches, loss_fn, who="amnesiac", step=step, augment=task.augment, generator=generator, monitor=monitor)
            if monitor.stopped:
                break
        return monitor.finish(model.eval())

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes (Adam: no weight decay), and `epochs` (each a pass over D_f and D̂_r) within the budget."""
        return {**space.shared(trial, weight_decay=False), "epochs": space.repeats(trial, "epochs", lambda c: c.forget + c.retain)}
