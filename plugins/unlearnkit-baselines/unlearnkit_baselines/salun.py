"""SalUn (Fan et al., ICLR 2024): random-label unlearning confined to the salient weights."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import in_range, non_negative, one_of, positive
from unlearnkit import config_class

from unlearnkit_baselines._common import epochs, fit, recipe_batch, recipe_lr, sgd
from unlearnkit_baselines.relabel import MIXES, random_label_batches, random_label_steps


def saliency_mask(
    model: nn.Module, forget: uk.ArrayDataset, sparsity: float, *, batch_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """The salient weights: a boolean mask per parameter name, true for the top `sparsity` fraction.

    Saliency is |Σ_batches ∇_θ(−CE(f_θ(x), y))| over D_f with its true labels, the model in eval
    mode, ranked globally across all parameters (SalUn's `generate_mask.py`). Batches of
    `batch_size` are taken in order [choice: the reference sums over a shuffled loader]. Exactly
    `int(sparsity · #weights)` entries are true.
    """
    was_training = model.training
    model.eval()
    saliency = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}  # frozen ones stay 0
    try:
        for x, y in uk.batches(forget, batch_size, device=device):
            loss = -F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    saliency[name] += g
    finally:
        model.train(was_training)
    flat = torch.cat([s.abs().flatten() for s in saliency.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, int(flat.numel() * sparsity), sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in saliency.items():
        masks[name] = keep[start : start + s.numel()].view_as(s)
        start += s.numel()
    return masks


class _MaskedUpdate:
    """Confines optimiser updates to `mask`: masked-out weights stay bit-identical to their start."""

    def __init__(self, model: nn.Module, mask: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer):
        self.params = [(p, mask[name]) for name, p in model.named_parameters()]
        self.start = [p.detach().clone() for p, _ in self.params]
        self.optimizer = optimizer

    def mask_gradients(self) -> None:
        for p, m in self.params:
            if p.grad is not None:
                p.grad.mul_(m)

    def restore(self) -> None:
        """Undo weight decay and momentum on masked-out weights; clear their momentum."""
        with torch.no_grad():
            for (p, m), start in zip(self.params, self.start):
                p.copy_(torch.where(m, p, start))
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(m)


@config_class
class SalUnConfig(uk.StopSettings):
    """Saliency mask over D_f, then random-label training (SalUn's `RL` with a mask).

    Reference: OPTML-Group/Unlearn-Saliency, README (`main_random.py --unlearn RL --unlearn_epochs
    10 --unlearn_lr 0.013 --num_indexes_to_replace 4500 --mask_path mask/with_0.5.pt`), batch 256,
    momentum 0.9, weight decay 5e-4, a pass over the relabelled D_f then one over D_r each epoch
    (`mix="forget-first"`, its CIFAR-10 branch), on ResNet-18s trained at lr 0.1, batch 256.
    `sparsity` is the fraction of weights updated (0.5). Rule: 10 epochs; lr `LR_RATIO` (0.13) ×
    the task recipe's lr and the recipe's batch (None = by rule).
    """

    LR_RATIO: ClassVar[float] = 0.13

    sparsity: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0, low_open=True))
    epochs: int = attrs.field(default=10, validator=positive)
    lr: Optional[float] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    batch_size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    momentum: float = attrs.field(default=0.9, validator=non_negative)
    weight_decay: float = attrs.field(default=5e-4, validator=non_negative)
    mix: str = attrs.field(default="forget-first", validator=one_of(*MIXES))


class SalUn(uk.Unlearner):
    """SalUn: weight saliency from the forget loss's gradient, then RL updates only on salient weights.

    Weight decay and momentum never move a masked-out weight: gradients are masked before each
    step and masked-out weights are restored to their start values after it.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        lr, batch_size = recipe_lr(task, cfg.LR_RATIO, cfg.lr), recipe_batch(task, 1.0, cfg.batch_size)
        mask = saliency_mask(model, task.forget, cfg.sparsity, batch_size=batch_size, device=device)
        optimizer = sgd(model, lr, cfg.momentum, cfg.weight_decay)
        masked = _MaskedUpdate(model, mask, optimizer)

        def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        total = cfg.epochs * random_label_steps(len(task.forget), len(task.retain), mix=cfg.mix, batch_size=batch_size)
        monitor = uk.StopMonitor(self, model, task, total_steps=total, seed=seed, device=device)
        step = 0
        for _ in epochs(cfg.epochs, "salun", progress):
            data = random_label_batches(
                task.forget, task.retain, task.num_classes, mix=cfg.mix, batch_size=batch_size,
                generator=generator, device=device, balanced=uk.has_batch_norm(model),
            )
            step = fit(
                model, optimizer, data, loss_fn, who="salun", step=step, augment=task.augment, generator=generator,
                after_backward=masked.mask_gradients, after_step=masked.restore, monitor=monitor,
            )
            if monitor.stopped:
                break
        model = monitor.finish(model.eval())
        self.run_info["resolved"] = {"lr": lr, "batch_size": batch_size}
        return model

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The shared axes, the mask ratio (`sparsity`), and `epochs` (each a pass over D_f and D̂_r) within the budget."""
        sparsity = space.float(trial, "sparsity", 0.1, 0.9)
        return {**space.shared(trial), "sparsity": sparsity, "epochs": space.repeats(trial, "epochs", lambda c: c.forget + c.retain)}
