"""Nearest neighbours of a support batch among a cached pool, vectorised in torch.

How k neighbours are picked for a support batch of b samples **[choice]**: every pool sample
is scored by its distance to the *closest* support sample (min over the batch), the pool is
ranked by that score, ascending, and the first k are returned, nearest first. This favours
the pool samples that sit next to any forget sample, which is what the query set is for:
the retained neighbours most at risk of being forgotten along with the support.

Equal scores are common in label space: a confident original model's softmax saturates to
an exact one-hot vector, so every pool sample of the support's predicted class is at
distance 0. `tie_break="random"` (default) orders tied samples by a random permutation of
the pool drawn from the caller's generator, so such ties do not make every query return the
same few pool samples; `tie_break="position"` keeps pool order (lower position first).
Either way the same generator state gives the same positions.

Metrics: `cosine` (1 − cosine similarity; a zero vector has similarity 0 to everything) and
`l2` (ranked by squared Euclidean distance, which orders exactly as the distance does;
computed from differences for vectors of up to 64 entries, such as softmax outputs, and by
one matrix product, ‖p‖² − 2 p·s + ‖s‖², for wider ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("cosine", "l2")
TIE_BREAKS = ("random", "position")
#: Widest vectors whose l2 distances are computed from differences rather than a matrix product.
DIRECT_L2_MAX_DIM = 64


class PoolIndex:
    """A pool of row vectors, preprocessed once for `metric`, queried with support batches."""

    def __init__(self, pool: torch.Tensor, metric: str):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        self.metric = metric
        if metric == "cosine":
            self.rows = F.normalize(pool, dim=1)
        else:
            self.rows = pool
            self.squared_norms = (pool * pool).sum(1)

    def __len__(self) -> int:
        return len(self.rows)

    def scores(self, support: torch.Tensor) -> torch.Tensor:
        """Each pool row's distance to its nearest support row (squared for `l2`), shape (len(pool),)."""
        support = support.to(self.rows.device, self.rows.dtype)
        # (support, pool) layouts: the reduction over the support runs along contiguous rows
        if self.metric == "cosine":
            similarity = F.normalize(support, dim=1) @ self.rows.T
            return 1.0 - similarity.amax(dim=0)
        if self.rows.shape[1] <= DIRECT_L2_MAX_DIM:
            distance = torch.cdist(support, self.rows, compute_mode="donot_use_mm_for_euclid_dist")
            return distance.amin(dim=0).square()
        # ‖p − s‖² = ‖p‖² − 2 p·s + ‖s‖², one matrix product for the whole batch
        squared = torch.addmm((support * support).sum(1)[:, None], support, self.rows.T, alpha=-2.0)
        return (squared.amin(dim=0) + self.squared_norms).clamp_min(0.0)

    def nearest(self, support: torch.Tensor, k: int, generator: torch.Generator, tie_break: str = "random") -> torch.Tensor:
        """Positions of the `min(k, len(pool))` pool rows nearest the support batch, nearest first."""
        scores = self.scores(support)
        if tie_break == "position":
            return torch.sort(scores, stable=True).indices[: min(k, len(self))]
        if tie_break != "random":
            raise ValueError(f"unknown tie_break {tie_break!r}; expected one of {', '.join(TIE_BREAKS)}")
        shuffle = torch.randperm(len(self), generator=generator, device=generator.device).to(scores.device)
        order = torch.sort(scores[shuffle], stable=True).indices  # ties keep the shuffled order
        return shuffle[order[: min(k, len(self))]]
