"""`nearest-class`: query samples that share a class with the support batch, others after."""

from __future__ import annotations

import torch
from torch import nn

import unlearnkit as uk


@uk.config_class
class NearestClassConfig:
    """`shuffle`: draw within each group in random order (else in pool order)."""

    shuffle: bool = True


class NearestClass(uk.Sampler):
    """Positions of pool samples whose label occurs in the support batch, then the rest."""

    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        self.pool_y = pool_y.detach().cpu().clone()

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        same = torch.isin(self.pool_y, support_y.cpu())
        groups = [same.nonzero().squeeze(1), (~same).nonzero().squeeze(1)]
        if self.config.shuffle:
            groups = [g[torch.randperm(len(g), generator=generator)] for g in groups]
        return torch.cat(groups)[: min(k, len(self.pool_y))]
