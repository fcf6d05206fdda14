"""FT (fine-tune on D̂_r) and GA (gradient ascent on D_f), as in SalUn's `unlearn/FT.py` and `GA.py`."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import non_negative, positive
from unlearnkit import config_class

from unlearnkit_baselines._common import batch_for_steps, epochs, fit, recipe_batch, recipe_lr, sgd, steps_per_epoch


@config_class
class FTConfig(uk.StopSettings):
    """Plain SGD fine-tuning on D̂_r at a constant learning rate.

    Reference: SalUn's `unlearn/FT.py` and its CIFAR-10 command (`--unlearn FT --unlearn_lr 0.01
    --unlearn_epochs 10`, batch 256, momentum 0.9, weight decay 5e-4) on ResNet-18s trained at lr
    0.1, batch 256. Rule: 10 epochs; lr `LR_RATIO` (0.1) × the task recipe's lr and the recipe's
    batch (None = by rule; the reference's lr and batch relative to its own training's).
    """

    LR_RATIO: ClassVar[float] = 0.1

    epochs: int = attrs.field(default=10, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)


class FineTune(uk.Unlearner):
    """FT: continue training the original model on the accessible retain set D̂_r only.

    Forgetting comes only from catastrophic forgetting of D_f while D̂_r is revisited
    (LTU's baseline (2); SalUn's `FT`). Uses the task's augmentation, like SalUn's loaders.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        batch_size, lr = recipe_batch(task, 1.0, cfg.batch_size), recipe_lr(task, cfg.LR_RATIO, cfg.lr)
        recipe = uk.TrainConfig(
            epochs=cfg.epochs, batch_size=batch_size, lr=lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, schedule="constant",
        )
        total = cfg.epochs * steps_per_epoch(len(task.retain), batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        model = uk.train_model(
            model, task.retain, recipe=recipe, augment=task.augment, seed=seed, device=device,
            progress=progress, who="ft", on_step=lambda step: monitor.check(model, step),
        )
        model = monitor.finish(model)
        self.run_info["resolved"] = {"lr": lr, "batch_size": batch_size}
        return model

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, and `epochs` (each a pass over D̂_r) within the budget."""
        return {**space.shared(trial), "epochs": space.repeats(trial, "epochs", lambda c: c.retain)}


@config_class
class GAConfig(uk.StopSettings):
    """SGD on the negated cross-entropy of D_f.

    Reference: SalUn's `unlearn/GA.py` and its CIFAR-10 command (`--unlearn GA --unlearn_lr 0.0001
    --unlearn_epochs 5`, batch 256 over 4 500 forget samples: 18 steps a pass; momentum 0.9,
    weight decay 5e-4) on ResNet-18s trained at lr 0.1. Rule: 5 passes over D_f of
    `forget_steps_per_pass` (18) steps each, the batch |D_f| / 18; lr `LR_RATIO` (1e-3) × the
    task recipe's lr (None = by rule).
    """

    LR_RATIO: ClassVar[float] = 1e-3

    epochs: int = attrs.field(default=5, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    forget_steps_per_pass: int = attrs.field(default=18, validator=positive)
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)


class GradientAscent(uk.Unlearner):
    """GA: maximise the cross-entropy of the forget set with its true labels (Thudi et al.).

    Reads D_f only, so nothing anchors the rest of the model; its damage grows with the
    learning rate and the number of epochs.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        lr, batch_size = recipe_lr(task, cfg.LR_RATIO, cfg.lr), batch_for_steps(len(task.forget), cfg.forget_steps_per_pass)
        optimizer = sgd(model, lr, cfg.momentum, cfg.weight_decay)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -F.cross_entropy(model(x), y)

        total = cfg.epochs * steps_per_epoch(len(task.forget), batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "ga", progress):
            data = uk.batches(task.forget, batch_size, generator=generator, device=device, balanced=uk.has_batch_norm(model))
            step = fit(model, optimizer, data, loss_fn, who="ga", step=step, augment=task.augment, generator=generator, monitor=monitor)
            if monitor.stopped:
                break
        model = monitor.finish(model.eval())
        self.run_info["resolved"] = {"lr": lr, "batch_size": batch_size}
        return model

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """lr, weight decay, the batch as steps a pass over D_f (GA's rule), and `epochs` (each a pass over D_f) within the budget."""
        steps = space.int(trial, "forget_steps_per_pass", 1, 64, log=True)
        return {"lr": space.lr(trial), "weight_decay": space.weight_decay(trial), "forget_steps_per_pass": steps,
                "epochs": space.repeats(trial, "epochs", lambda c: c.forget)}
