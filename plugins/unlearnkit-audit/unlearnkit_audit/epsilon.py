"""The NeurIPS 2023 Machine Unlearning challenge's forgetting score (google-deepmind/
unlearning_evaluation, `metric.py`), vectorised.

For each forget example, the confidences under N unlearned models and under N retrained
models are two samples; every decision rule of two families — one threshold ("at or above t")
and an interval ("inside [l, r]", for the peakier sample) on the reference's grids — gives a
false-positive rate α and a false-negative rate β, and the example's
ε = max over rules of max(ln(1 − δ − α) − ln β, ln(1 − δ − β) − ln α), the (ε, δ)
indistinguishability bound with δ = 1e-5, capped at 50. Each ε earns 1, ½, ¼, … points by
half-unit bucket up to ⌈ln(N − 1)⌉; F is their mean.

The reference materialises every rule across every model, one example at a time. Here each
rule is reduced to the pair of counts (members of each sample it accepts): ε depends on
nothing else, so the ε of every possible pair is tabulated once, and what remains is to find
which pairs the grids realise. The counts come from ranks in the sorted confidences; the grids'
values are those of the reference, bit for bit (NumPy's `linspace` for the interval rule,
torch's float32 `linspace` for the threshold rule), and the rates and ε are float32 like the
reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unlearnkit_audit.confidence import check_confidences

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # the interval rule's right ends span the peakier sample ± BUFFER, its left ends r − width ± BUFFER
LEFT_PER_RIGHT = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
PEAKY_RATIO = 0.01  # a sample whose range is under 1% of the other's is a near point mass: ε = cap
CHUNK = 8  # examples per block of the interval rule ([CHUNK, ~400, 2N] arrays)


def epsilon_table(models: int, delta: float = DELTA) -> np.ndarray:
    """ε of a rule accepting `tp` of the positive sample and `fp` of the negative one, as
    `table[tp, fp]` (float32): +inf where it separates them perfectly, NaN where exactly one
    error rate is 0 (the reference discards such rules as under-sampled)."""
    n = np.float32(models)
    tp, fp = np.meshgrid(np.arange(models + 1), np.arange(models + 1), indexing="ij")
    tpr, fnr = tp.astype(np.float32) / n, (models - tp).astype(np.float32) / n
    fpr, tnr = fp.astype(np.float32) / n, (models - fp).astype(np.float32) / n
    one_minus_delta = np.float32(1 - delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.fmax(np.log(one_minus_delta - fpr) - np.log(fnr), np.log(one_minus_delta - fnr) - np.log(fpr))
    table = np.maximum(bound, np.float32(0)).astype(np.float32)
    table[fpr * fnr == 0] = np.nan
    table[(fpr + fnr == 0) & (tpr + tnr == 2)] = np.inf
    return table


def _linspace_at(k: np.ndarray, start: np.ndarray, step: np.ndarray, stop: np.ndarray, num: int) -> np.ndarray:
    """Value `k` of `np.linspace(start, stop, num)` (NumPy computes k·step + start, then sets the last to stop)."""
    return np.where(k == num - 1, stop, k * step + start)


def _count_at_or_below(x: np.ndarray, start: np.ndarray, step: np.ndarray, stop: np.ndarray, num: int) -> np.ndarray:
    """How many values of `np.linspace(start, stop, num)` are <= x, elementwise (exact)."""
    inner = num - 1  # values 0 .. num - 2 are k·step + start; the last is `stop` itself
    with np.errstate(invalid="ignore"):
        k = np.floor((x - start) / step)
    np.clip(k + 1, 0, inner, out=k)
    # the estimate is off by at most one either way (rounding); settle it on the grid itself
    k += (k < inner) & (np.minimum(k, inner - 1) * step + start <= x)
    k -= (k > 0) & (np.maximum(k - 1, 0) * step + start > x)
    k += stop <= x
    return k.astype(np.int32)


def _interval_pairs(peak: np.ndarray, other: np.ndarray, width: np.ndarray, num_right: int) -> tuple[np.ndarray, np.ndarray]:
    """(example, pair code) of every (tp, fp) the interval rule realises, for examples whose grid
    has `num_right` right ends; `peak`, `other`: [models, examples]; code = tp·(N + 1) + fp."""
    models, examples = peak.shape
    low = (peak.min(0) + width) - BUFFER
    high = peak.max(0) + BUFFER
    step = np.subtract(high, low) / (num_right - 1)
    right = _linspace_at(np.arange(num_right)[None, :], low[:, None], step[:, None], high[:, None], num_right)  # [E, R]
    centre = right - width[:, None]
    left_low, left_high = centre - BUFFER, centre + BUFFER
    left_step = np.subtract(left_high, left_low) / (LEFT_PER_RIGHT - 1)
    values = np.concatenate([peak, other]).T  # [E, 2N]
    order = np.argsort(values, axis=1, kind="stable")
    values = np.take_along_axis(values, order, axis=1)
    cum_peak = np.zeros((examples, 2 * models + 1), np.int64)
    np.cumsum(order < models, axis=1, out=cum_peak[:, 1:])
    # The rule (r_j, l_jk) accepts the sorted values i < n_j (value <= r_j) with k < q_ji
    # (q_ji = how many left ends are <= value i): it rejects the first m of them, for every cut
    # m that some k realises, q_j,m-1 <= k < q_jm (q_j,-1 = 0; q_j,n_j = LEFT_PER_RIGHT).
    n_in = np.stack([np.searchsorted(values[e], right[e], side="right") for e in range(examples)])  # [E, R]
    q = _count_at_or_below(values[:, None, :], left_low[..., None], left_step[..., None], left_high[..., None], LEFT_PER_RIGHT)
    rejected_by_some = q < LEFT_PER_RIGHT  # value i lies left of at least one left end
    inner = np.zeros(q.shape[:2] + (2 * models + 1,), dtype=bool)  # cut m < n_j: q_j,m-1 < q_jm (and < all)
    inner[..., 0] = q[..., 0] > 0
    inner[..., 1:-1] = (q[..., 1:] > q[..., :-1]) & rejected_by_some[..., :-1]
    last = np.ones_like(inner)  # cut m = n_j: q_j,m-1 < LEFT_PER_RIGHT
    last[..., 1:] = rejected_by_some
    m = np.arange(2 * models + 1)
    e, j, cut = np.nonzero(np.where(m == n_in[..., None], last, inner & (m < n_in[..., None])))
    end = n_in[e, j]
    tp = cum_peak[e, end] - cum_peak[e, cut]
    fp = (end - cut) - tp
    return e, tp * (models + 1) + fp


def _threshold_pairs(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(example, pair code) of every (tp, fp) the one-threshold rule realises."""
    models, examples = pos.shape
    sorted_pos, sorted_neg = np.sort(pos, axis=0), np.sort(neg, axis=0)
    low = np.minimum(sorted_pos[0], sorted_neg[0])
    high = np.maximum(sorted_pos[-1], sorted_neg[-1])
    counts = np.ceil((high - low) * THRESHOLDS_PER_UNIT).astype(np.int64)
    rows, codes = [], []
    for e in range(examples):  # the grid is torch's float32 linspace: not reproducible in NumPy bit for bit
        t = torch.linspace(torch.tensor(low[e], dtype=torch.float64), torch.tensor(high[e], dtype=torch.float64),
                           int(counts[e])).numpy().astype(np.float64)
        tp = models - np.searchsorted(sorted_pos[:, e], t, side="left")
        fp = models - np.searchsorted(sorted_neg[:, e], t, side="left")
        codes.append(tp * (models + 1) + fp)
        rows.append(np.full(len(t), e))
    return np.concatenate(rows), np.concatenate(codes)


def example_epsilons(unlearned_confs: Any, retrained_confs: Any) -> np.ndarray:
    """Per-example ε (float64, in [0, 50]) of the two `[models, examples]` confidence matrices.

    Where no rule of either family has both error rates above 0 (e.g. every model gives an
    example the same confidence), ε = 0: no rule tells the samples apart. (The reference
    fails its assertion there.)
    """
    u, r = check_confidences(unlearned_confs, retrained_confs)
    models, examples = u.shape
    retrain_is_positive = np.median(r, axis=0) > np.median(u, axis=0)  # the positive sample has the larger median
    pos = np.where(retrain_is_positive, r, u)
    neg = np.where(retrain_is_positive, u, r)
    pos_range, neg_range = pos.max(0) - pos.min(0), neg.max(0) - neg.min(0)
    smallest = np.where(pos_range > neg_range, neg_range, pos_range)
    largest = np.where(pos_range > neg_range, pos_range, neg_range)
    with np.errstate(divide="ignore", invalid="ignore"):
        peaky = smallest / largest < PEAKY_RATIO  # 0/0 (both constant) is NaN: not peaky, as in the reference
    eps = np.full(examples, EPSILON_CAP)
    live = np.nonzero(~peaky)[0]
    if len(live):
        eps[live] = _epsilons_from_rules(pos[:, live], neg[:, live], pos_range[live], neg_range[live])
    return eps


def _epsilons_from_rules(pos: np.ndarray, neg: np.ndarray, pos_range: np.ndarray, neg_range: np.ndarray) -> np.ndarray:
    models, examples = pos.shape
    swap = pos_range >= neg_range  # the interval rule's "positive" is the peakier sample
    peak, other = np.where(swap, neg, pos), np.where(swap, pos, neg)
    width = np.where(pos_range > neg_range, neg_range, pos_range)
    num_right = np.ceil(((peak.max(0) + BUFFER) - ((peak.min(0) + width) - BUFFER)) * THRESHOLDS_PER_UNIT).astype(np.int64)
    seen = np.zeros((examples, (models + 1) ** 2), dtype=bool)
    for count in np.unique(num_right):  # 400 or 401, as the grid's end points round
        group = np.nonzero(num_right == count)[0]
        for start in range(0, len(group), CHUNK):
            block = group[start : start + CHUNK]
            rows, codes = _interval_pairs(peak[:, block], other[:, block], width[block], int(count))
            seen[block[rows], codes] = True
    rows, codes = _threshold_pairs(pos, neg)
    seen[rows, codes] = True
    table = epsilon_table(models).reshape(-1)
    valid = np.where(np.isnan(table), -np.inf, table)
    best = np.where(seen, valid[None, :], -np.inf).max(axis=1)
    best = np.where(np.isneginf(best), 0.0, best)  # no rule with both error rates above 0
    return np.clip(best.astype(np.float64), 0.0, EPSILON_CAP)


def bucket_points(eps: Any, models: int) -> np.ndarray:
    """Points per example: 1, ½, ¼, … for ε in [0, ½), [½, 1), …, up to ⌈ln(N − 1)⌉; 0 beyond."""
    buckets = int(2 * np.ceil(np.log(models - 1))) if models > 1 else 0
    index = np.floor(2 * np.asarray(eps, dtype=np.float64)).astype(np.int64)
    return np.where(index < buckets, np.ldexp(1.0, -np.minimum(index, 1023)), 0.0)


def forget_quality(unlearned_confs: Any, retrained_confs: Any) -> float:
    """F: the mean bucket points of the per-example ε, as `compute_forget_score_from_confs`.

    Both arguments are `[models, examples]` logit-scaled confidences of the forget set (same
    shape, at least 2 models, finite). 1 = no example distinguishable; 0 = every example.
    """
    eps = example_epsilons(unlearned_confs, retrained_confs)
    return float(bucket_points(eps, np.shape(unlearned_confs)[0]).sum() / len(eps))


def final_score(forget_quality: float, unlearned_accuracy: dict[str, float], retrained_accuracy: dict[str, float]) -> float:
    """F · (RA_u / RA_r) · (TA_u / TA_r): mean retain and test accuracies of the unlearned and
    retrained models (dicts with "RA" and "TA")."""
    for name, acc in (("retrained", retrained_accuracy), ("unlearned", unlearned_accuracy)):
        missing = {"RA", "TA"} - set(acc)
        if missing:
            raise ValueError(f"{name} accuracy lacks {', '.join(sorted(missing))}")
    if retrained_accuracy["RA"] <= 0 or retrained_accuracy["TA"] <= 0:
        raise ValueError(f"retrained accuracies must be > 0, got {retrained_accuracy}")
    return forget_quality * (unlearned_accuracy["RA"] / retrained_accuracy["RA"]) * (unlearned_accuracy["TA"] / retrained_accuracy["TA"])
