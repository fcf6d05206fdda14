"""Selective Synaptic Dampening (Foster et al., AAAI 2024), after the SSD repository's `ssd.py`."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.validators import positive
from unlearnkit import config_class


def importances(model: nn.Module, data: uk.ArrayDataset, *, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Diagonal importance per parameter: the mean over mini-batches of the squared batch gradient of CE.

    Batches are taken in order (no shuffle), the model in eval mode, as the reference's
    `calc_importance` does.
    """
    was_training = model.training
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}  # frozen ones stay 0
    n = 0
    try:
        for x, y in uk.batches(data, batch_size, device=device):
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:
                    total[name] += g.detach().pow(2)
            n += 1
    finally:
        model.train(was_training)
    return {name: t / max(n, 1) for name, t in total.items()}


def dampening_factor(
    importance_train: torch.Tensor, importance_forget: torch.Tensor, *, alpha: float, lam: float, exponent: float = 1.0
) -> torch.Tensor:
    """β per weight: min((λ·I_D / I_f)^exponent, 1) where I_f > α·I_D (selected), 1 elsewhere."""
    selected = importance_forget > alpha * importance_train  # synapse selection
    ratio = lam * importance_train / torch.where(selected, importance_forget, torch.ones_like(importance_forget))
    beta = ratio.pow(exponent).clamp(max=1.0)  # dampening, bounded by 1 so no weight grows
    return torch.where(selected, beta, torch.ones_like(beta))


@config_class
class SSDConfig:
    """Selection weighting α and dampening constant λ of SSD.

    Defaults of the SSD repository's random-forgetting runs (forget_random_main.py):
    α (`selection_weighting`) = 10, λ (`dampening_constant`) = 1, exponent 1, batch 128.
    """

    selection_weighting: float = attrs.field(default=10.0, validator=positive)
    dampening_constant: float = attrs.field(default=1.0, validator=positive)
    exponent: float = attrs.field(default=1.0, validator=positive)
    batch_size: int = attrs.field(default=128, validator=positive)


class SelectiveSynapticDampening(uk.Unlearner):
    """SSD: shrink the weights far more important to D_f than to the whole training set D.

    With I_D and I_f the importances over D = D_r ∪ D_f and over D_f, every weight with
    I_f > α·I_D is multiplied by min(λ·I_D / I_f, 1); all others are left bit-identical.
    Training-free; reads the training set, as the reference does.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"forget", "train"})

    def run(self, model: nn.Module, task: uk.TaskView, *, seed: int, device: torch.device, progress: bool) -> nn.Module:
        cfg = self.config
        forget = importances(model, task.forget, batch_size=cfg.batch_size, device=device)
        train = importances(model, task.train, batch_size=cfg.batch_size, device=device)
        with torch.no_grad():
            for name, p in model.named_parameters():
                beta = dampening_factor(
                    train[name], forget[name], alpha=cfg.selection_weighting, lam=cfg.dampening_constant,
                    exponent=cfg.exponent,
                )
                p.copy_(torch.where(beta < 1, p * beta, p))
        return model.eval()

    @classmethod
    def search_space(cls, trial: Any, space: uk.SearchSpace) -> dict[str, Any]:
        """SSD's α (`selection_weighting`) and λ (`dampening_constant`). Training-free, so no length.

        α reaches 1000: on MNIST-1D's `class:1` every α up to 16 that was run collapsed the model
        (RA 24-57 %), so the space extends to where few weights are selected.
        """
        return {
            "selection_weighting": space.float(trial, "selection_weighting", 1.0, 1000.0, log=True),
            "dampening_constant": space.float(trial, "dampening_constant", 0.1, 10.0, log=True),
        }
