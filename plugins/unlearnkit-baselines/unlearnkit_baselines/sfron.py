"""SFR-on (Huang et al., "Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement", NeurIPS 2024)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import non_negative, positive
from unlearnkit import config_class

from unlearnkit_baselines._common import endless_batches, epochs, recipe_batch, recipe_lr, sgd, steps_per_epoch, stream

Mask = dict[str, torch.Tensor]


def fisher_diagonal(model: nn.Module, data: uk.ArrayDataset, *, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Per parameter, the mean over batches of the squared gradient of the batch's mean cross-entropy.

    The model is in eval mode; batches are taken in order [choice: the reference's loaders
    shuffle]. A parameter without a gradient gets zeros.
    """
    was_training = model.training
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    n_batches = math.ceil(len(data) / batch_size)
    try:
        for x, y in uk.batches(data, batch_size, device=device):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()), allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    fisher[name] += g.square() / n_batches
    finally:
        model.train(was_training)
    return fisher


def remain_balanced_mask(
    model: nn.Module, forget: uk.ArrayDataset, retain: uk.ArrayDataset, threshold: float, *, batch_size: int, device: torch.device
) -> Mask:
    """The salient weights: true where the forget Fisher is at least `threshold` times the retain Fisher.

    Saliency is (F_f + 1e-15) / (F_r + 1e-15) per weight, F the diagonal Fisher of
    `fisher_diagonal` on D_f and on D̂_r (the reference's `get_weight_saliency_mask`).
    """
    forget_fisher = fisher_diagonal(model, forget, batch_size=batch_size, device=device)
    retain_fisher = fisher_diagonal(model, retain, batch_size=batch_size, device=device)
    return {name: (forget_fisher[name] + 1e-15) / (retain_fisher[name] + 1e-15) >= threshold for name in forget_fisher}


def adaptive_forget_loss(logits: torch.Tensor, y: torch.Tensor, lambd: float) -> torch.Tensor:
    """Σ c_i·ℓ_i / Σ c_i with c_i = 1 / ℓ_i^λ (no gradient through c): well-remembered samples weigh most.

    ℓ_i is the per-sample cross-entropy; λ = 0 gives the plain mean (gradient ascent's loss).
    [choice] A loss below the resolution of its dtype (float32: 1.2e-7) enters c_i as that
    resolution. The reference adds 1e-15 instead, so a sample whose loss rounds to exactly 0,
    common on a model that memorised D_f, gets a weight of 1e15, and the batch's loss and
    gradient vanish; above it the weights agree to within 3e-12 (relative) at the default λ = 0.5.
    """
    losses = F.cross_entropy(logits, y, reduction="none")
    floor = torch.finfo(losses.dtype).eps
    coef = 1.0 / losses.detach().clamp_min(floor).pow(lambd)
    return (coef * losses).sum() / coef.sum()


def cosine(base: float, t: int, total: int) -> float:
    """`base` annealed by a half cosine from `base` at t = 0 to 0 at t = `total`."""
    return base * (1.0 + math.cos(math.pi * t / total)) / 2.0


def forget_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    mask: Mask,
    *,
    alpha: float,
    lambd: float,
    max_norm: float,
    step: int,
) -> None:
    """One step of adaptive gradient ascent on a forget batch that moves only the weights inside `mask`.

    The loss is −α·`adaptive_forget_loss`; its gradient is masked, then clipped to norm
    `max_norm`. [choice] The weights outside the mask, and their momentum, are put back after
    the step, so the optimiser's momentum and weight decay do not move them either.
    """
    loss = -alpha * adaptive_forget_loss(model(x), y, lambd)
    uk.check_finite_loss(loss, "sfron", step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [(p, mask[name]) for name, p in model.named_parameters()]
    for p, m in params:
        if p.grad is not None:
            p.grad.mul_(m)
    torch.nn.utils.clip_grad_norm_([p for p, _ in params], max_norm)
    before = [(p.detach().clone(), _momentum(optimizer, p)) for p, _ in params]
    optimizer.step()
    with torch.no_grad():
        for (p, m), (start, start_buffer) in zip(params, before):
            p.copy_(torch.where(m, p, start))
            buffer = _momentum(optimizer, p, clone=False)
            if buffer is not None:  # a buffer made by this step starts at zero outside the mask
                buffer.copy_(torch.where(m, buffer, start_buffer if start_buffer is not None else 0.0))


def retain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *, step: int) -> None:
    """One plain cross-entropy step on a D̂_r batch, every weight free to move."""
    loss = F.cross_entropy(model(x), y)
    uk.check_finite_loss(loss, "sfron", step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _momentum(optimizer: torch.optim.Optimizer, p: torch.Tensor, clone: bool = True) -> torch.Tensor | None:
    buffer = optimizer.state.get(p, {}).get("momentum_buffer")
    return buffer.clone() if clone and buffer is not None else buffer


@config_class
class SFRonConfig(uk.StopSettings):
    """Masked adaptive gradient ascent on D_f every `forget_every` iterations, a retain step on D̂_r every iteration.

    Reference: K1nght/Unified-Unlearning-w-Remain-Geometry, `Classification/unlearn/sfron.py`
    (`SFRon`, its CIFAR-10 10% random-forgetting parameters) run by `main_random.py` /
    `scripts/unlearn.sh` (batch 128). Iteration t (0-based) takes, if t % `forget_every` == 0,
    a forget step (`forget_step`: loss −α_t·`adaptive_forget_loss`, α_t = `forget_alpha`
    annealed by a cosine over the run, gradient masked by `remain_balanced_mask` and clipped
    to `max_norm`), then a plain cross-entropy step on a D̂_r batch; one SGD optimiser serves
    both and its lr follows a cosine over `iterations`. The fast forget steps (large, adaptive,
    confined to the salient weights) and the slower retain steps are the paper's fast-slow
    update. Reference values kept: momentum 0.9, weight decay 5e-4, forget every 5 iterations,
    max norm 7, λ = 0.5 (`lambd`, "lambda in the paper"), mask threshold 1 ("gamma in the
    paper"); its "adaga" loss (λ = 0 gives its "ga" loss). The reference's EMA of the weights
    runs with β = 1, which leaves the weights unchanged, so it is not implemented; its mask is
    computed once, from the input model, before the loop.
    Rule: the batch is the task recipe's (the reference's 128 against its originals' 128; None =
    by rule). [measured] The lr is `LR_RATIO` (0.2) × the recipe's (0.01 at lr 0.05): the rule's
    ratio, the reference's 0.01 against its originals' 0.1, gives 0.005 there, which on the
    tuning seeds 3 and 4 (the 5 000-sample regime's three cells, γ 1) left a mean average gap of
    5.77 against 4.66 at 0.01, the lr at which `iterations` and `forget_alpha` were chosen.
    [scaled] The reference's 1 500 iterations at batch 128 cover its 45 000 retain samples 4.3
    times, and its 300 forget steps its 5 000 forget samples 7.7 times. On mnist1d (3 240 retain,
    360 forget, batch 64, the original recipe's) the CNN1D has memorised D_f (median forget loss
    3e-4), so the ascent needs more weight and more passes: `iterations` 660 (13 passes over D_r,
    23 over D_f) and `forget_alpha` 250 were chosen on the quick preset's tuning seeds 3 and 4
    only (grid and criterion in docs/baselines.md); at the reference's α = 25 nothing is
    forgotten within 880 iterations, and α = 2 500 costs 5-10 points of test accuracy.
    """

    LR_RATIO: ClassVar[float] = 0.2

    iterations: int = attrs.field(default=660, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    forget_every: int = attrs.field(default=5, validator=positive)
    forget_alpha: float = attrs.field(default=250.0, validator=non_negative)
    max_norm: float = attrs.field(default=7.0, validator=positive)
    lambd: float = attrs.field(default=0.5, validator=non_negative)
    threshold: float = attrs.field(default=1.0, validator=non_negative)


class SFRon(uk.Unlearner):
    """SFR-on: forget with adaptive, saliency-masked gradient ascent while fine-tuning keeps D̂_r.

    The mask keeps the weights whose forget Fisher reaches `threshold` times their retain
    Fisher, so forgetting moves mostly the weights D̂_r does not need.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    #: The contract suite's tiny task: 60 iterations run the same loop as the default 660, 10x faster.
    contract_config: ClassVar[dict[str, Any]] = {"iterations": 60}

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        lr, batch_size = recipe_lr(task, cfg.LR_RATIO, cfg.lr), recipe_batch(task, 1.0, cfg.batch_size)
        self.run_info["resolved"] = {"lr": lr, "batch_size": batch_size}
        mask = remain_balanced_mask(model, task.forget, task.retain, cfg.threshold, batch_size=batch_size, device=device)
        generator, forget_generator = torch.Generator().manual_seed(seed), stream(seed, "forget")
        retain_batches = endless_batches(task.retain, batch_size, generator=generator, device=device, balanced=uk.has_batch_norm(model))
        forget_batches = endless_batches(task.forget, batch_size, generator=forget_generator, device=device, balanced=uk.has_batch_norm(model))
        optimizer = sgd(model, lr, cfg.momentum, cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.iterations)
        total = cfg.iterations + steps_per_epoch(cfg.iterations, cfg.forget_every)  # retain steps + forget steps
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        model.train()
        step = 0
        for t in epochs(cfg.iterations, "sfron", progress, unit="iteration"):
            if t % cfg.forget_every == 0:
                x, y = next(forget_batches)
                if task.augment is not None:
                    x = task.augment(x, forget_generator)
                alpha = cosine(cfg.forget_alpha, t, cfg.iterations)
                forget_step(model, x, y, optimizer, mask, alpha=alpha, lambd=cfg.lambd, max_norm=cfg.max_norm, step=step)
                step += 1
                if monitor.check(model, step):
                    break
            x, y = next(retain_batches)
            if task.augment is not None:
                x = task.augment(x, generator)
            retain_step(model, x, y, optimizer, step=step)
            step += 1
            scheduler.step()
            if monitor.check(model, step):
                break
        return monitor.finish(model.eval())

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, the mask `threshold`, the ascent's weight `forget_alpha`, and `iterations`
        within the budget: each a retain batch, and a forget batch every `forget_every` of them."""
        shared = space.shared(trial)
        threshold = space.float(trial, "threshold", 0.1, 10.0, log=True)
        forget_alpha = space.float(trial, "forget_alpha", 1.0, 1e4, log=True)
        per_iteration = 1 + 1 / space.default.forget_every  # batches: a retain one, and a forget one every `forget_every`
        iterations = space.repeats(trial, "iterations", lambda c: (shared["batch_size"] or c.batch_size) * per_iteration)
        return {**shared, "threshold": threshold, "forget_alpha": forget_alpha, "iterations": iterations}
