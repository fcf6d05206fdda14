"""U-LiRA (Hayes et al. 2024, "Inexact Unlearning Needs More Careful Evaluations to Avoid a
False Sense of Privacy"): a per-example likelihood-ratio test between unlearned models that
forgot an example and unlearned models that never saw it.

For every example x, two Gaussians are fitted to x's logit-scaled confidence: one under the
shadow models that trained on x and then unlearned it, one under those that never trained on
it (LiRA's parametric fit, Carlini et al. 2022). A target model's confidence c on x is scored
by the log likelihood ratio log N(c; μ_forgot, σ²_forgot) − log N(c; μ_unseen, σ²_unseen);
above 0 the attack says "forgot". Every model serves as a target once, scored by the Gaussians
of the other N − 1 (leave one model out), so no target model's own output enters its fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from unlearnkit_audit.confidence import _as_array

MIN_PER_SIDE = 3  # fits use >= 2 models on each side once the target is left out
VARIANCE_FLOOR = 1e-12  # keeps a population of identical confidences (a point mass) finite


def _check(confs: Any, forgot: Any) -> tuple[np.ndarray, np.ndarray]:
    c = _as_array(confs, "confs")
    f = _as_array(forgot, "forgot")
    if c.ndim != 2:
        raise ValueError(f"confs must be a [models, examples] matrix, got shape {c.shape}")
    if f.shape != c.shape:
        raise ValueError(f"forgot has shape {f.shape} but confs {c.shape}; expected the same [models, examples]")
    if f.dtype != bool:
        raise ValueError(f"forgot must be boolean, got dtype {f.dtype}")
    bad = ~np.isfinite(c)
    if bad.any():
        model, example = np.argwhere(bad)[0]
        raise ValueError(f"confs holds {int(bad.sum())} NaN or infinite values (first at model {model}, example {example})")
    for side, counts in (("forgot", f.sum(0)), ("never saw", (~f).sum(0))):
        if counts.min() < MIN_PER_SIDE:
            example = int(np.argmin(counts))
            raise ValueError(f"example {example} has {int(counts[example])} models that {side} it; U-LiRA needs at least "
                             f"{MIN_PER_SIDE} on each side")
    return c.astype(np.float64), f


def likelihood_ratios(confs: Any, forgot: Any) -> np.ndarray:
    """Leave-one-model-out log likelihood ratios, `[models, examples]`: model j's score on x
    under the Gaussians fitted to the other models (positive: "j forgot x")."""
    c, f = _check(confs, forgot)
    c = c - c.mean(axis=0)  # centred per example: the sums of squares below lose no precision
    fits = []
    for side in (f, ~f):
        n = side.sum(0) - side  # models on this side once model j is left out: [models, examples]
        total = (c * side).sum(0) - c * side
        squares = (c * c * side).sum(0) - c * c * side
        mean = total / n
        variance = np.maximum((squares - n * mean * mean) / (n - 1), VARIANCE_FLOOR)  # unbiased
        fits.append((mean, variance))
    (mean_in, var_in), (mean_out, var_out) = fits
    return (-0.5 * np.log(var_in) - (c - mean_in) ** 2 / (2 * var_in)
            + 0.5 * np.log(var_out) + (c - mean_out) ** 2 / (2 * var_out))


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    return 100.0 * float(tpr[fpr <= max_fpr].max(initial=0.0))


def attack_summary(scores: np.ndarray, forgot: np.ndarray) -> dict[str, float]:
    """Balanced accuracy of the rule "score > 0 means forgot", ROC AUC, and TPR at 1% and 0.1%
    FPR over every (target model, example), all in %. 50 / 50 / 1 / 0.1 = indistinguishable."""
    truth, pooled = forgot.reshape(-1), scores.reshape(-1)
    said = pooled > 0
    balanced = 50.0 * (said[truth].mean() + (~said[~truth]).mean())
    fpr, tpr, _ = roc_curve(truth, pooled)
    return {"accuracy": float(balanced), "AUC": 100.0 * float(roc_auc_score(truth, pooled)),
            "TPR@1%FPR": _tpr_at(fpr, tpr, 0.01), "TPR@0.1%FPR": _tpr_at(fpr, tpr, 0.001)}


def example_accuracy(scores: np.ndarray, forgot: np.ndarray) -> np.ndarray:
    """Per example: the attack's balanced accuracy over the target models, in % (50 = safe)."""
    said = scores > 0
    hits_in = (said & forgot).sum(0) / forgot.sum(0)
    hits_out = (~said & ~forgot).sum(0) / (~forgot).sum(0)
    return 50.0 * (hits_in + hits_out)
