"""The seeded training loop used for the original model, Retrain and fine-tuning baselines."""

from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.core.errors import DivergenceError
from unlearnkit.core.interfaces import resolve_device
from unlearnkit.data.datasets import ArrayDataset
from unlearnkit.data.recipe import TrainConfig
from unlearnkit.engine import distributed
from unlearnkit.engine.progress import progress_bar


#: The layers that normalise with batch statistics in train mode.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether `model` holds a BatchNorm layer (one that normalises with batch statistics in train mode)."""
    return any(isinstance(m, BATCH_NORMS) for m in model.modules())


def batches(
    data: ArrayDataset,
    batch_size: int,
    *,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str = "cpu",
    balanced: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of `(x, y)` on `device`; shuffled when a `generator` is given.

    Plain, a pass is ceil(n / batch_size) batches of `batch_size`, the last one the remainder.
    `balanced`, it is as many batches, their sizes differing by at most one, so none is a remainder
    of one or two samples, and never a batch of one (fewer batches when `batch_size` is 1, or 2
    with n odd). Training passes over a model with BatchNorm are balanced (`has_batch_norm`): batch
    statistics over so few samples are degenerate (over one, an error) and take the model far from
    the function it has in eval mode.
    """
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    parts = torch.tensor_split(order, max(1, min(-(-n // batch_size), n // 2))) if balanced and n else order.split(batch_size)
    for idx in parts:
        yield data.x[idx].to(device, non_blocking=True), data.y[idx].to(device, non_blocking=True)


def recompute_batch_norm(
    model: nn.Module, data: ArrayDataset, batch_size: int, *, generator: torch.Generator, device: torch.device | str = "cpu"
) -> nn.Module:
    """`model` in eval mode with its BatchNorm running statistics recomputed over `data` under its
    current weights: one shuffled pass in balanced batches, a cumulative average
    (`torch.optim.swa_utils.update_bn`). Shuffled, because a batch's variance leaves out the spread
    between batches: batches of one class each (data stored class by class) would understate it.
    Models without BatchNorm are returned as they are."""
    from torch.optim.swa_utils import update_bn

    if has_batch_norm(model):
        update_bn((x for x, _ in batches(data, batch_size, generator=generator, device=device, balanced=True)), model)
    return model.eval()


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler for `schedule` over `total_steps`."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    if schedule == "step":  # SalUn's CIFAR recipe: x0.1 at epochs 91 and 136 of 182
        milestones = [int(total_steps * 0.5), int(total_steps * 0.75)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def check_finite_loss(loss: torch.Tensor, who: str, step: int) -> None:
    """Raise `DivergenceError` naming `who` and `step` when `loss` is NaN or infinite."""
    if not math.isfinite(float(loss.detach())):
        raise DivergenceError(f"{who}: loss became {float(loss.detach())} at step {step}; {DivergenceError.GENERIC_ADVICE}")


def train_model(
    model: nn.Module,
    data: ArrayDataset | object,
    *,
    recipe: Optional[TrainConfig] = None,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    who: str = "train",
    on_step: Optional[Callable[[int], bool]] = None,
) -> nn.Module:
    """Train `model` in place with cross-entropy and return it.

    `data` is an `ArrayDataset` or an `UnlearningTask` (then its train split, recipe and
    augmentation are used unless given). The same seed, data and recipe give the same weights.
    `on_step(step)` is called after every optimiser step (from 1); training ends when it returns
    True (an unlearner's `StopMonitor.check`).
    Under torchrun the model is wrapped in DDP and each rank trains on its share of every
    global batch (`recipe.batch_size` is the global batch size; see `unlearnkit.engine.distributed`).
    """
    if hasattr(data, "train") and hasattr(data, "recipe"):
        recipe = recipe or data.recipe
        augment = augment if augment is not None else data.augment
        data = data.train
    recipe = recipe or TrainConfig()
    device = resolve_device(device, model)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    scheduler = make_scheduler(optimizer, recipe.schedule, recipe.epochs * steps_per_epoch)
    world = distributed.world_size()
    net = model
    if world > 1:
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    step, stop = 0, False
    for _ in progress_bar(range(recipe.epochs), desc=who, unit="epoch", enabled=progress):
        if stop:
            break
        for x, y in batches(data, recipe.batch_size, generator=generator, device=device, balanced=has_batch_norm(model)):
            if augment is not None:
                x = augment(x, generator)
            n = len(y)
            if world > 1:  # this rank's share; DDP averages, hence the factor `world`
                part = distributed.shard(torch.arange(n, device=device))
                x, y = x[part], y[part]
            loss = F.cross_entropy(net(x), y, reduction="sum") * (world / n)
            check_finite_loss(loss, who, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if on_step is not None and on_step(step):
                stop = True
                break
    return model.eval()
