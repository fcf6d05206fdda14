"""The NeurIPS 2023 challenge's forgetting score as its published code computes it, on the CPU.

A port of `compute_forget_score_from_confs` and its helpers in google-deepmind/
unlearning_evaluation `metric.py`, kept loop for loop (one example at a time, every
threshold materialised across models as a tile), so that `benchmarks/audit_cost.py` times
the reference's computation and the tests check `unlearnkit_audit.epsilon` against it.
Two changes, neither of which alters a number:

- the device transfers (`.cuda()`) are gone: everything stays on the CPU;
- the reference asserts `thr_eps` (a NumPy array) to check that some threshold survived,
  which raises "truth value of an array ... is ambiguous" whenever more than one does, i.e.
  on every ordinary example; the port asserts `thr_eps.size`, the evident intent.

Slow by design; use `unlearnkit_audit.forget_quality`.
"""

from __future__ import annotations

import numpy as np
import torch

DELTA = 1e-05
EPSILON_CAP = 50
NUM_THRESHOLDS_PER_UNIT = 100


def _interval_rule_rates(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rates of the two-threshold rule "inside [left, right] means the peakier population"."""
    pos_range = pos.max() - pos.min()
    neg_range = neg.max() - neg.min()
    smallest = neg_range if pos_range > neg_range else pos_range
    if pos_range >= neg_range:  # "positive" becomes the peakier population
        pos, neg = neg, pos
    buffer = 2.0
    width = smallest
    low = (pos.min() + width - buffer).numpy()
    high = (pos.max() + buffer).numpy()
    right = np.linspace(low, high, num=int(np.ceil((high - low) * NUM_THRESHOLDS_PER_UNIT)))
    width = width.numpy()
    per_right = int(np.ceil(2 * buffer * NUM_THRESHOLDS_PER_UNIT))
    left = np.concatenate([np.linspace(r - width - buffer, r - width + buffer, num=per_right) for r in right], axis=0)
    right = np.tile(np.reshape(right, (-1, 1)), (1, per_right)).reshape(-1)
    count = len(left)
    models = pos.shape[0]
    right_t = torch.from_numpy(np.tile(right[None, :], (models, 1)))
    left_t = torch.from_numpy(np.tile(left[None, :], (models, 1)))
    pos_t = torch.tile(pos[:, None], (1, count))
    neg_t = torch.tile(neg[:, None], (1, count))

    def inside(c: torch.Tensor) -> torch.Tensor:
        return torch.logical_and(torch.le(left_t, c), torch.le(c, right_t)).type(torch.float32)

    def outside(c: torch.Tensor) -> torch.Tensor:
        return torch.logical_not(inside(c)).type(torch.float32)

    return (torch.mean(inside(pos_t), 0), torch.mean(outside(pos_t), 0),
            torch.mean(inside(neg_t), 0), torch.mean(outside(neg_t), 0))


def _threshold_rule_rates(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rates of the one-threshold rule "at or above t means the population with the larger median"."""
    both = torch.cat([pos, neg])
    low, high = both.min(), both.max()
    count = int(torch.ceil((high - low) * NUM_THRESHOLDS_PER_UNIT))
    thresholds = torch.linspace(low, high, count)
    models = pos.shape[0]
    thresholds = torch.tile(thresholds[None, :], (models, 1))
    pos_t = torch.tile(pos[:, None], (1, count))
    neg_t = torch.tile(neg[:, None], (1, count))
    return (torch.mean((pos_t >= thresholds).type(torch.float32), 0), torch.mean((pos_t < thresholds).type(torch.float32), 0),
            torch.mean((neg_t >= thresholds).type(torch.float32), 0), torch.mean((neg_t < thresholds).type(torch.float32), 0))


def reference_epsilons(pos_confs: np.ndarray, neg_confs: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per-example ε, one example at a time, as the reference's `_get_epsilons`."""
    epsilons = []
    for i in range(pos_confs.shape[1]):
        pos = pos_confs[:, i].reshape(-1)
        neg = neg_confs[:, i].reshape(-1)
        pos_range = np.max(pos) - np.min(pos)
        neg_range = np.max(neg) - np.min(neg)
        largest = pos_range if pos_range > neg_range else neg_range
        smallest = neg_range if pos_range > neg_range else pos_range
        if smallest / largest < 0.01:  # one population is a near point mass
            epsilons.append(EPSILON_CAP)
            continue
        pos_t, neg_t = torch.from_numpy(pos), torch.from_numpy(neg)
        tpr_d, fnr_d, fpr_d, tnr_d = _interval_rule_rates(pos_t, neg_t)
        tpr_s, fnr_s, fpr_s, tnr_s = _threshold_rule_rates(pos_t, neg_t)
        tpr = torch.cat([tpr_d, tpr_s], 0)
        fnr = torch.cat([fnr_d, fnr_s], 0)
        fpr = torch.cat([fpr_d, fpr_s], 0)
        tnr = torch.cat([tnr_d, tnr_s], 0)
        total = tpr.shape[0]
        eps = torch.zeros(total)
        perfect = torch.eq(fpr + fnr, torch.zeros(total)) * torch.eq(tpr + tnr, 2 * torch.ones(total))
        eps = torch.where(perfect, torch.full(eps.shape, np.inf), eps)
        one_zero = torch.eq(eps, torch.zeros_like(eps)) * torch.eq(fpr * fnr, torch.zeros_like(eps))
        eps = torch.where(one_zero, torch.full(eps.shape, np.nan), eps)
        fpr_np, fnr_np = fpr.numpy(), fnr.numpy()
        bound = np.clip(np.nanmax([np.log(1 - delta - fpr_np) - np.log(fnr_np),
                                   np.log(1 - delta - fnr_np) - np.log(fpr_np)], axis=0), 0, None)
        eps = torch.where(torch.eq(eps, torch.zeros_like(eps)), torch.from_numpy(bound), eps)
        kept = [j for j, e in enumerate(eps.numpy()) if not np.isnan(e)]
        eps = eps.numpy()[kept]
        assert eps.size, "Something went wrong, all thresholds gave nan epsilon..."
        epsilons.append(np.nanmax(eps))
    return np.clip(epsilons, 0, EPSILON_CAP)


def reference_forget_score(unlearned_confs: np.ndarray, retrained_confs: np.ndarray) -> tuple[float, np.ndarray]:
    """`compute_forget_score_from_confs`, and the per-example ε it sums."""
    examples = retrained_confs.shape[1]
    retrain_is_positive = np.median(retrained_confs, axis=0) > np.median(unlearned_confs, axis=0)
    pos = np.where(retrain_is_positive, retrained_confs, unlearned_confs)
    neg = np.where(retrain_is_positive, unlearned_confs, retrained_confs)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = reference_epsilons(pos, neg)
    max_epsilon = np.ceil(np.log(unlearned_confs.shape[0] - 1))
    start, size, points, buckets = 0, 0.5, 1, {}
    while start + size <= max_epsilon:
        buckets[start] = points
        points /= 2
        start += size
    score = 0
    for e in eps:
        for start, points in buckets.items():
            if e < start + size:
                score += points
                break
    return score / examples, eps
