"""`same-class`: k pool samples sharing a true class with the support batch, at random."""

from __future__ import annotations

import torch

from unlearnkit import Sampler, config_class


@config_class
class SameClassConfig:
    """No settings."""


class SameClass(Sampler):
    """Pool samples of the support's classes first (shuffled), then any others to fill up to k."""

    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: torch.nn.Module | None) -> None:
        self.pool_y = pool_y.cpu().clone()

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        order = torch.randperm(len(self.pool_y), generator=generator)  # random order, then a stable sort
        same = torch.isin(self.pool_y[order], support_y.cpu())  # puts same-class samples first
        return order[torch.sort((~same).int(), stable=True).indices][: min(k, len(order))]
