"""The logit-scaled confidence both audits observe, and the checks on confidence matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

#: The reference adds this to both probabilities before taking logs (LiRA's habit), which
#: bounds the confidence to about ±103.6.
PROBABILITY_FLOOR = 1e-45


def _as_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array, got {type(value).__name__}: {exc}") from None


def logit_scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
    """log(p_y + 1e-45) − log(1 − p_y + 1e-45) of the softmax of `logits` at each label.

    `logits` has shape `[..., classes]` (e.g. `[examples, classes]` or `[models, examples,
    classes]`), `labels` the leading shape or one it broadcasts to (`[examples]`); NumPy arrays
    or torch tensors. Returns float64 of the leading shape. Equals the reference's
    `compute_logit_scaled_confidence` (which rounds through float32 when given float32
    logits), computed in log space so that it neither overflows nor mutates its input.
    """
    z = _as_array(logits, "logits").astype(np.float64)
    y = _as_array(labels, "labels")
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits must have shape [..., classes] with at least 2 classes, got shape {z.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    try:
        y = np.broadcast_to(y, z.shape[:-1])
    except ValueError:
        raise ValueError(f"labels of shape {y.shape} do not match logits of shape {z.shape} (expected {z.shape[:-1]})") from None
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        bad = y[(y < 0) | (y >= z.shape[-1])].flat[0]
        raise ValueError(f"label {bad} is out of range for {z.shape[-1]} classes")
    if not np.isfinite(z).all():
        raise ValueError(f"logits hold {int((~np.isfinite(z)).sum())} NaN or infinite values")
    log_total = logsumexp(z, axis=-1)
    own = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, y[..., None], -np.inf, axis=-1)
    log_correct = own - log_total
    log_wrong = logsumexp(others, axis=-1) - log_total
    floor = np.log(PROBABILITY_FLOOR)
    return np.logaddexp(log_correct, floor) - np.logaddexp(log_wrong, floor)


def check_confidences(unlearned: Any, retrained: Any, *, min_models: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both `[models, examples]` matrices as float64, or a ValueError naming what is wrong."""
    u = _as_array(unlearned, "unlearned_confs")
    r = _as_array(retrained, "retrained_confs")
    for name, a in (("unlearned_confs", u), ("retrained_confs", r)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be a [models, examples] matrix, got shape {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
    if u.shape != r.shape:
        raise ValueError(f"unlearned_confs has shape {u.shape} but retrained_confs {r.shape}; "
                         "expected the same [models, examples]")
    if u.shape[0] < min_models:
        raise ValueError(f"need at least {min_models} models of each kind, got {u.shape[0]}")
    if u.shape[1] < 1:
        raise ValueError("need at least one example, got 0 columns")
    for name, a in (("unlearned_confs", u), ("retrained_confs", r)):
        bad = ~np.isfinite(a)
        if bad.any():
            model, example = np.argwhere(bad)[0]
            raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite values (first at model {model}, "
                             f"example {example}: {a[model, example]})")
    return u.astype(np.float64), r.astype(np.float64)
