"""FT (fine-tune on D̂_r) and GA (gradient ascent on D_f), as in SalUn's `unlearn/FT.py` and `GA.py`."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import non_negative, positive
from unlearnkit import config_class, stop_rule

from unlearnkit_baselines._common import epochs, fit, sgd, steps_per_epoch


@config_class
class FTConfig(uk.StopSettings):
    """Plain SGD fine-tuning on D̂_r at a constant learning rate.

    SalUn's defaults: 10 epochs, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256 (CIFAR,
    ResNet-18). On the embedded mnist1d task the batch is 64, the original recipe's, so an epoch
    of D_r takes about as many steps as SalUn's; the other values are SalUn's.
    """

    epochs: int = attrs.field(default=10, validator=positive)
    lr: float = attrs.field(default=0.01, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)
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
        recipe = uk.TrainConfig(
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, schedule="constant",
        )
        total = cfg.epochs * steps_per_epoch(len(task.retain), cfg.batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        model = uk.train_model(
            model, task.retain, recipe=recipe, augment=task.augment, seed=seed, device=device,
            progress=progress, who="ft", on_step=lambda step: monitor.check(model, step),
        )
        return monitor.finish(model)

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, and `epochs` (each a pass over D̂_r) within the budget."""
        return {**space.shared(trial), "epochs": space.repeats(trial, "epochs", lambda c: c.retain)}


@config_class
class GAConfig(uk.StopSettings):
    """SGD on the negated cross-entropy of D_f.

    SalUn's CIFAR-10 command: 5 epochs, lr 1e-4, batch 256 (momentum 0.9, weight decay 5e-4),
    about 90 steps on 4 500 forget samples. [scaled] On mnist1d (360 forget samples) a batch of
    64 gives only 6 steps an epoch and lr 1e-4 leaves the model unchanged, so GA runs 10 epochs
    at lr 0.0045, tuned on mnist1d / cnn1d / random:0.1 to forget a little without collapsing
    (UA 1-3%, RA >= 96% over two originals and two seeds). GA is unstable by nature: once the
    forget loss grows its gradient grows, so a little more (lr 0.006, or 12 epochs at 0.004)
    already costs 5-20 points of RA, and lr 0.01 for 10 epochs diverges. Lower `lr` or
    `epochs` if it diverges on another task.
    """

    stop: str = stop_rule("calibrated")  # measured default: docs/stopping.md, "Defaults"

    epochs: int = attrs.field(default=10, validator=positive)
    lr: float = attrs.field(default=0.0045, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)
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
        optimizer = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -F.cross_entropy(model(x), y)

        total = cfg.epochs * steps_per_epoch(len(task.forget), cfg.batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "ga", progress):
            data = uk.batches(task.forget, cfg.batch_size, generator=generator, device=device)
            step = fit(model, optimizer, data, loss_fn, who="ga", step=step, augment=task.augment, generator=generator, monitor=monitor)
            if monitor.stopped:
                break
        return monitor.finish(model.eval())

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, and `epochs` (each a pass over D_f) within the budget."""
        return {**space.shared(trial), "epochs": space.repeats(trial, "epochs", lambda c: c.forget)}
