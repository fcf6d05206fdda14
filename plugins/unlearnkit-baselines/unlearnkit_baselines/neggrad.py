"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descend on D̂_r and ascend on D_f in one loss."""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import in_range, non_negative, positive
from unlearnkit import config_class

from unlearnkit_baselines._common import epochs, fit, recipe_batch, recipe_lr, sgd, steps_per_epoch, stream


def neggrad_plus_loss(retain_loss: torch.Tensor, forget_loss: torch.Tensor, beta: float) -> torch.Tensor:
    """β·L(D̂_r) − (1 − β)·L(D_f): NegGrad+'s joint objective."""
    return beta * retain_loss - (1.0 - beta) * forget_loss


def capped_forget_loss(logits: torch.Tensor, y: torch.Tensor, cap: Optional[float]) -> torch.Tensor:
    """Mean over the batch of min(CE_i, cap); `cap` None is the plain mean cross-entropy.

    A sample past the cap adds a constant, so the ascent no longer pushes it."""
    if cap is None:
        return F.cross_entropy(logits, y)
    return F.cross_entropy(logits, y, reduction="none").clamp(max=cap).mean()


def distance_to_start(model: nn.Module, start: list[torch.Tensor]) -> torch.Tensor:
    """½‖θ − θ₀‖² over every parameter, θ₀ the weights the run started from."""
    return sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), start)) / 2


@config_class
class NegGradPlusConfig(uk.StopSettings):
    """SGD on β·CE(D̂_r batch) − (1 − β)·CE(D_f batch), one step per batch of D̂_r.

    Reference: meghdadk/SCRUB, `thirdparty/repdistiller/helper/loops.py` (`train_negrad`) and the
    notebooks' `negative_grad` (each retain batch paired with the next batch of the forget loader,
    cycled; plain SGD, no momentum, weight decay 0). The reference fixes β: 0.95 with 10 epochs,
    lr 0.01, retain batch 32 and forget batch 64 in `small_scale_unlearning.ipynb` (cell 85;
    loaders cell 26; originals trained at batch 128, cell 8) — DeepUnlearn's default β too —
    and 0.9999 with 5 epochs, batches 32 / 16 in `MIA_experiments.ipynb` (cell 22), whose
    CIFAR-10 originals were trained at lr 0.01, batch 128. Rule: the small-scale recipe (β 0.95,
    10 epochs); batches `RETAIN_BATCH_RATIO` (1/4) and `FORGET_BATCH_RATIO` (1/2) × the task
    recipe's batch; the small-scale loop's (`run_neggrad_epoch`, cell 70) penalty
    `weight_decay`/2·‖θ − θ₀‖² on the distance to the original, inside the retain term, with
    `anchor` = its originals' training weight decay — the task recipe's (None = by rule);
    lr `LR_RATIO` (1) × the recipe's lr: the notebooks' NegGrad lr 0.01 equals
    the lr of their CIFAR-10 originals (`large_scale_unlearning.ipynb` cells 18/20, the MIA
    notebook's cell 22; the small-scale originals' lr 0.001 goes with weight decay 0.1, another
    optimiser setting). None = by rule. β = 1 is fine-tuning on D̂_r (no forget batch is drawn
    then).

    Beyond the reference: `chance_cap` (default on) caps each forget sample's cross-entropy at
    ln C, the loss of a uniform guess over the C classes, so the ascent stops pushing a sample
    the model already rates below chance; off, the ascent is unbounded as in the reference
    (docs/baselines.md, "Beyond the reference").
    """

    LR_RATIO: ClassVar[float] = 1.0
    RETAIN_BATCH_RATIO: ClassVar[float] = 0.25
    FORGET_BATCH_RATIO: ClassVar[float] = 0.5

    beta: float = attrs.field(default=0.95, validator=in_range(0.0, 1.0))
    epochs: int = attrs.field(default=10, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    forget_batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    anchor: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(non_negative))
    momentum: float = attrs.field(default=0.0, validator=non_negative)
    weight_decay: float = attrs.field(default=0.0, validator=non_negative)
    chance_cap: bool = True


class NegGradPlus(uk.Unlearner):
    """NegGrad+: fine-tuning on D̂_r and gradient ascent on D_f, weighed by β in a single loss.

    D̂_r is visited in the order (and with the augmentation draws) that `ft` uses for the same
    seed; the forget batches come from a random stream of their own, so with β = 1 and
    `anchor` = 0 the run is `ft` with the same settings, step for step.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)  # D̂_r order and augmentation, as `ft` draws them
        forget_generator = stream(seed, "forget")
        lr = recipe_lr(task, cfg.LR_RATIO, cfg.lr)
        optimizer = sgd(model, lr, cfg.momentum, cfg.weight_decay)
        batch_size = recipe_batch(task, cfg.RETAIN_BATCH_RATIO, cfg.batch_size)
        forget_batch_size = recipe_batch(task, cfg.FORGET_BATCH_RATIO, cfg.forget_batch_size)
        anchor = cfg.anchor if cfg.anchor is not None else task.recipe.weight_decay
        start = [p.detach().clone() for p in model.parameters()]
        cap = math.log(task.num_classes) if cfg.chance_cap else None
        forget_batches = iter(())
        balanced = uk.has_batch_norm(model)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            retain_loss = F.cross_entropy(model(x), y)
            if anchor > 0:
                retain_loss = retain_loss + anchor * distance_to_start(model, start)
            if cfg.beta == 1.0:
                return cfg.beta * retain_loss
            x_f, y_f = next(forget_batches)
            if task.augment is not None:
                x_f = task.augment(x_f, forget_generator)
            return neggrad_plus_loss(retain_loss, capped_forget_loss(model(x_f), y_f, cap), cfg.beta)

        total = cfg.epochs * steps_per_epoch(len(task.retain), batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "neggrad-plus", progress):
            if cfg.beta < 1.0:
                one_pass = list(uk.batches(task.forget, forget_batch_size, generator=forget_generator, device=device, balanced=balanced))
                forget_batches = itertools.cycle(one_pass)
            data = uk.batches(task.retain, batch_size, generator=generator, device=device, balanced=balanced)
            step = fit(
                model, optimizer, data, loss_fn, who="neggrad-plus", step=step, augment=task.augment, generator=generator,
                monitor=monitor,
            )
            if monitor.stopped:
                break
        model = monitor.finish(model.eval())
        self.run_info["resolved"] = {
            "lr": lr, "batch_size": batch_size, "forget_batch_size": forget_batch_size, "anchor": anchor, "forget_cap": cap,
        }
        return model

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, β, and `epochs` within the budget: each a pass over D̂_r, every retain
        batch with a forget batch (the batches left to the rule: its ratios of the recipe's batch)."""
        shared, cfg = space.shared(trial), space.default

        def epoch(c: uk.Cell) -> float:
            batch = shared["batch_size"] or max(1, round(cfg.RETAIN_BATCH_RATIO * c.batch_size))
            forget_batch = cfg.forget_batch_size or max(1, round(cfg.FORGET_BATCH_RATIO * c.batch_size))
            return c.retain + steps_per_epoch(c.retain, batch) * forget_batch

        return {**shared, "beta": space.float(trial, "beta", 0.5, 1.0), "epochs": space.repeats(trial, "epochs", epoch)}
