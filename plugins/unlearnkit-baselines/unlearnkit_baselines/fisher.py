"""Fisher forgetting (Golatkar et al., CVPR 2020), as SalUn's `unlearn/fisher.py` runs it."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import unlearnkit as uk
from unlearnkit.validators import non_negative, positive
from unlearnkit import config_class

EPSILON = 1e-8  # added to each per-sample gradient before squaring, as the reference does


def fisher_diagonal(
    model: nn.Module, data: uk.ArrayDataset, *, batch_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """The empirical diagonal Fisher per parameter: mean over samples of (∂ log p(y|x) / ∂θ + 1e-8)².

    Per-sample gradients are computed in chunks of `batch_size` with `torch.func.vmap`, the
    model in eval mode (as the reference does).
    """
    was_training = model.training
    model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def log_likelihood(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return torch.log_softmax(logits[0], dim=-1).gather(0, y.unsqueeze(0)).squeeze(0)

    per_sample = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    try:
        for x, y in uk.batches(data, batch_size, device=device):
            grads = per_sample(params, x, y)
            for name in fisher:
                fisher[name] += (grads[name] + EPSILON).pow(2).sum(0)
    finally:
        model.train(was_training)
    return {name: f / max(len(data), 1) for name, f in fisher.items()}


def noise_std(fisher: torch.Tensor, alpha: float, max_std: float) -> torch.Tensor:
    """Per-weight noise scale sqrt(α / F), clamped at `max_std` (variance α/F, at most max_std²)."""
    return torch.sqrt(alpha / fisher).clamp(max=max_std)


@config_class
class FisherConfig:
    """Gaussian noise scaled by the inverse Fisher of D̂_r.

    Defaults of SalUn's `fisher`: α = 0.2 (its `--alpha`), per-weight std clamped at 1e-3,
    10x the noise on parameters whose last dimension equals the number of classes (the
    classifier bias: the reference hard-codes 10 for CIFAR-10). Per-sample gradients are taken
    `batch_size` at a time; the value does not change the result, only memory.
    """

    alpha: float = attrs.field(default=0.2, validator=positive)
    max_std: float = attrs.field(default=1e-3, validator=positive)
    head_scale: float = attrs.field(default=10.0, validator=non_negative)
    batch_size: int = attrs.field(default=64, validator=positive)


class FisherForgetting(uk.Unlearner):
    """Fisher forgetting: add N(0, min(α/F, max_std²)) noise to each weight, F the Fisher over D̂_r.

    Weights that matter little for the retain set (small F) get the most noise, which is meant
    to erase what only D_f needed. Training-free; reads D̂_r only.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"retain"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        fisher = fisher_diagonal(model, task.retain, batch_size=cfg.batch_size, device=device)
        with torch.no_grad():
            for name, p in model.named_parameters():
                std = noise_std(fisher[name], cfg.alpha, cfg.max_std)
                if p.shape[-1:] == (task.num_classes,):
                    std = std * cfg.head_scale
                noise = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                p.add_(std * noise)
        return model.eval()

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """The noise: α, the clamp on its std and the head's multiplier. Training-free (no
        optimiser step), so no length; `batch_size` changes memory only and is not tuned."""
        return {
            "alpha": space.float(trial, "alpha", 1e-3, 10.0, log=True), "max_std": space.float(trial, "max_std", 1e-4, 1e-1, log=True),
            "head_scale": space.float(trial, "head_scale", 1.0, 100.0, log=True),
        }
