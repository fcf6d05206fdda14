"""LTU's three query samplers (Sec. 3.2.1): `feature-nn`, `label-nn` and `random`.

All draw from the pool D̂_r handed to `prepare` and return positions into it, so nothing
outside D̂_r (in particular nothing of D_f) can be drawn. Pool-wide work (embedding every
pool sample with the frozen original model) happens once in `prepare`; a query embeds only
the support batch and costs O(len(pool) · len(support)).
"""

from __future__ import annotations

from typing import Callable

import attrs
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit import Sampler, config_class
from unlearnkit.validators import one_of, positive

from unlearnkit_samplers.embedding import embedder
from unlearnkit_samplers.neighbours import METRICS, TIE_BREAKS, PoolIndex


@config_class
class FeatureNNConfig:
    """Nearest pool samples to the support batch in the space of a feature extractor φ.

    `features`: `penultimate` (the frozen original model's head input, LTU's default) or
    `input` (the flattened raw inputs). `metric`: `cosine` (default) or `l2`.
    `tie_break`: equal distances ordered at random by the generator (default) or by pool position.
    `batch_size`: samples per forward pass when embedding.
    """

    features: str = attrs.field(default="penultimate", validator=one_of("penultimate", "input"))
    metric: str = attrs.field(default="cosine", validator=one_of(*METRICS))
    tie_break: str = attrs.field(default="random", validator=one_of(*TIE_BREAKS))
    batch_size: int = attrs.field(default=512, validator=positive)


@config_class
class LabelNNConfig:
    """Nearest pool samples to the support batch in label space, through a vectorisation v.

    `label_space`: `softmax` (v = the frozen original model's softmax vector, LTU's default)
    or `class` (pool samples of the support's true classes, in random order, then random
    others to fill up to k). `metric` (softmax only): `l2` (default) or `cosine`.
    `tie_break` (softmax only): equal distances ordered at random by the generator (default;
    a saturated softmax puts many pool samples at distance 0) or by pool position.
    `batch_size`: samples per forward pass when embedding.
    """

    label_space: str = attrs.field(default="softmax", validator=one_of("softmax", "class"))
    metric: str = attrs.field(default="l2", validator=one_of(*METRICS))
    tie_break: str = attrs.field(default="random", validator=one_of(*TIE_BREAKS))
    batch_size: int = attrs.field(default=512, validator=positive)


@config_class
class RandomConfig:
    """No settings: k positions uniformly at random without replacement."""


class _PoolSampler(Sampler):
    """Bookkeeping shared by the samplers: the pool's size and device, argument checks."""

    name = "sampler"

    def __init__(self, config: object):
        super().__init__(config)
        self._size: int | None = None
        self._pool_device = torch.device("cpu")

    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        """Remember the pool (and cache what the sampler compares about it)."""
        if len(pool_x) != len(pool_y):
            raise uk.UsageError(f"{self.name}: pool_x has {len(pool_x)} samples but pool_y has {len(pool_y)}")
        self._size = None  # unprepared until the caches below are built
        self._prepare(pool_x, pool_y, model)
        self._size, self._pool_device = len(pool_x), pool_x.device

    def _prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        pass

    def _check(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int) -> int:
        if self._size is None:
            raise uk.UsageError(f"{self.name}: call prepare(pool_x, pool_y, model) before sample()")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise uk.UsageError(f"{self.name}: k must be a non-negative integer, got {k!r}")
        if len(support_x) != len(support_y):
            raise uk.UsageError(f"{self.name}: support_x has {len(support_x)} samples but support_y has {len(support_y)}")
        return min(k, self._size)

    def _positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.to(device=self._pool_device, dtype=torch.long)


class _NearestSampler(_PoolSampler):
    """Ranks the pool by its distance to the support batch in one cached embedding."""

    def __init__(self, config: object):
        super().__init__(config)
        self._index: PoolIndex | None = None
        self._embed: Callable[[torch.Tensor], torch.Tensor] | None = None

    def _setup(self, kind: str, metric: str, pool_x: torch.Tensor, model: nn.Module | None) -> None:
        self._embed = embedder(kind, model, self.config.batch_size)
        self._index = PoolIndex(self._embed(pool_x), metric) if len(pool_x) else None

    def _nearest(self, support_x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        if k == 0 or self._index is None:
            return self._positions(torch.zeros(0, dtype=torch.long))
        if len(support_x) == 0:
            raise uk.UsageError(f"{self.name}: the support batch is empty; nearest neighbours need at least one support sample")
        support = self._embed(support_x)
        return self._positions(self._index.nearest(support, k, generator, self.config.tie_break))


class FeatureNN(_NearestSampler):
    """Query set Q_1: the pool samples nearest the support batch in feature space (cached per pool)."""

    name = "feature-nn"
    config: FeatureNNConfig

    def __init__(self, config: FeatureNNConfig | None = None):
        super().__init__(config or FeatureNNConfig())

    def _prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        self._setup(self.config.features, self.config.metric, pool_x, model)

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """The min(k, len(pool)) pool positions nearest the support batch, nearest first."""
        return self._nearest(support_x, self._check(support_x, support_y, k), generator)


class LabelNN(_NearestSampler):
    """Query set Q_2: the pool samples nearest the support batch in label space."""

    name = "label-nn"
    config: LabelNNConfig

    def __init__(self, config: LabelNNConfig | None = None):
        super().__init__(config or LabelNNConfig())
        self._pool_y: torch.Tensor | None = None

    def _prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: nn.Module | None) -> None:
        if self.config.label_space == "class":
            self._pool_y = pool_y.detach().clone()
        else:
            self._setup("softmax", self.config.metric, pool_x, model)

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """`softmax`: the nearest pool positions, nearest first; `class`: same-class positions first, at random."""
        k = self._check(support_x, support_y, k)
        if self.config.label_space == "softmax":
            return self._nearest(support_x, k, generator)
        pool_y = self._pool_y
        same = torch.isin(pool_y, support_y.to(pool_y.device, pool_y.dtype))
        matching, others = same.nonzero().squeeze(1), (~same).nonzero().squeeze(1)
        shuffled = [
            group[torch.randperm(len(group), generator=generator, device=generator.device).to(group.device)]
            for group in (matching, others)
        ]
        return self._positions(torch.cat(shuffled)[:k])


class RandomSampler(_PoolSampler):
    """Query set Q_3: k pool positions uniformly at random, without replacement."""

    name = "random"

    def __init__(self, config: RandomConfig | None = None):
        super().__init__(config or RandomConfig())

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """`torch.randperm(len(pool), generator=generator)[:k]`; the support batch is not used."""
        k = self._check(support_x, support_y, k)
        return self._positions(torch.randperm(self._size, generator=generator, device=generator.device)[:k])
