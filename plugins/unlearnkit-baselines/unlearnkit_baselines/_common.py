"""Helpers the baselines share: re-initialisation, relabelling, data mixing and the update loop."""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn

import unlearnkit as uk

Batch = tuple[torch.Tensor, torch.Tensor]
Augment = Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]]


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter of `model` in place, as a freshly built model of its architecture.

    Every module's own `reset_parameters` runs in module order under `torch.manual_seed(seed)`,
    on the CPU (so the draw does not depend on the device), which reproduces
    `unlearnkit.build_model(name, task, seed=seed)` for models whose constructor initialises
    each layer with its default initialiser (the built-in `mlp` and `cnn1d`). Buffers such as
    BatchNorm running statistics are reset with their module. [choice] A parameter that no
    module resets (e.g. a ViT's class token or position embedding) is drawn from N(0, 0.02²),
    ViT's own initialiser, so no trained value survives.
    """
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    model.to("cpu")
    reset: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            init = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
            if callable(init):
                init()
                reset.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for p in model.parameters():
                if id(p) not in reset:
                    nn.init.normal_(p, std=0.02)
    return model.to(device)


def uniform_labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """`n` labels drawn uniformly from all `num_classes` classes (the true one included)."""
    return torch.randint(0, num_classes, (n,), generator=generator)


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A label for each of `y` drawn uniformly from the `num_classes - 1` classes other than the true one."""
    if num_classes < 2:
        raise uk.UsageError(f"a wrong label needs at least 2 classes, got num_classes={num_classes}")
    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return (y.cpu() + shift) % num_classes


def relabelled(data: uk.ArrayDataset, labels: torch.Tensor) -> uk.ArrayDataset:
    """`data` with its labels replaced (inputs and source indices shared, nothing copied)."""
    return uk.ArrayDataset(data.x, labels, data.indices)


def concat(*parts: uk.ArrayDataset) -> uk.ArrayDataset:
    """The samples of every part, in order, as one dataset."""
    return uk.ArrayDataset(
        torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), torch.cat([p.indices for p in parts])
    )


def random_subset(data: uk.ArrayDataset, fraction: float, generator: torch.Generator) -> uk.ArrayDataset:
    """A uniformly drawn `fraction` of `data` (at least one sample), in source order."""
    if fraction >= 1.0:
        return data
    k = max(1, int(round(fraction * len(data))))
    return data.subset(torch.randperm(len(data), generator=generator)[:k].sort().values)


def stream(seed: int, name: str) -> torch.Generator:
    """A generator of its own for one random stream (`name`) of a run seeded with `seed`."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def endless_batches(
    data: uk.ArrayDataset, batch_size: int, *, generator: torch.Generator, device: torch.device, balanced: bool = False
) -> Iterator[Batch]:
    """Shuffled passes over `data`, one after another, without end (a fresh order every pass)."""
    while True:
        yield from uk.batches(data, batch_size, generator=generator, device=device, balanced=balanced)


def sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD over every parameter of `model` (SalUn's unlearning optimiser)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def epochs(n: int, who: str, progress: bool, unit: str = "epoch") -> Iterable[int]:
    """`range(n)`, shown as a progress bar named `who` counting `unit`s when `progress` is on."""
    return uk.progress_bar(range(n), desc=who, unit=unit, enabled=progress)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    who: str,
    step: int,
    augment: Augment = None,
    generator: Optional[torch.Generator] = None,
    after_backward: Optional[Callable[[], None]] = None,
    after_step: Optional[Callable[[], None]] = None,
    monitor: Optional[uk.StopMonitor] = None,
) -> int:
    """One optimiser step per batch on `loss_fn(x, y)`; returns the step counter after the last one.

    `augment(x, generator)` is applied to each batch's inputs first; a NaN or infinite loss
    raises `DivergenceError` naming `who` and the step. `after_backward` may edit gradients,
    `after_step` the parameters. With a `monitor`, it is checked after every step and the
    epoch ends early when it stops (`monitor.stopped`).
    """
    model.train()
    for x, y in batches:
        if augment is not None:
            x = augment(x, generator)
        loss = loss_fn(x, y)
        uk.check_finite_loss(loss, who, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        step += 1
        if monitor is not None and monitor.check(model, step):
            break
    return step


def recipe_lr(task: uk.TaskView, ratio: float, lr: Optional[float] = None) -> float:
    """`lr` if given, else `ratio` × the task recipe's learning rate.

    The translation rule for a reference whose SGD learning rate belongs to its own training: it
    keeps the reference's unlearning lr relative to the lr its original models were trained with.
    """
    return lr if lr is not None else ratio * task.recipe.lr


def recipe_batch(task: uk.TaskView, ratio: float, batch_size: Optional[int] = None) -> int:
    """`batch_size` if given, else `ratio` × the task recipe's batch (at least 1)."""
    return batch_size if batch_size is not None else max(1, round(ratio * task.recipe.batch_size))


def batch_for_steps(n: int, steps_per_pass: int) -> int:
    """The batch that makes one pass over `n` samples take `steps_per_pass` steps (fewer when n is smaller).

    The translation rule where a reference's number of optimiser steps per pass over D_f matters:
    the batch is a fixed fraction of the set, so the step count does not grow with it.
    """
    return max(1, -(-n // steps_per_pass))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in one pass over `n` samples in batches of `batch_size` (last one partial)."""
    return -(-n // batch_size)
