"""Membership signals computed from a classifier's logits and the true labels.

Every function is a vectorised torch function of `logits` (shape `(n, C)`) and, where it
needs them, `labels` (shape `(n,)`): finite for any finite logits (logarithms are floored at
`log(EPS)`) and differentiable w.r.t. the logits wherever the signal is continuous.
Half-precision logits are promoted to float32; float64 stays float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "EPS", "LOG_EPS", "confidence", "correctness", "cross_entropy_loss", "entropy", "log1m_probs",
    "log_probs", "logit_margin", "modified_entropy", "probabilities", "probs_with_label", "sorted_probs",
]

#: Floor of every probability inside a logarithm (SalUn's reference code uses the same 1e-30).
EPS = 1e-30
LOG_EPS = math.log(EPS)


def _float(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log p_i = log softmax(z)_i, floored at `LOG_EPS`; shape `(n, C)`."""
    return F.log_softmax(_float(logits), dim=-1).clamp_min(LOG_EPS)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The softmax probability vector p; shape `(n, C)`."""
    return F.softmax(_float(logits), dim=-1)


def log1m_probs(logits: torch.Tensor) -> torch.Tensor:
    """log(1 − p_i) for every class, floored at `LOG_EPS`; shape `(n, C)`.

    Computed as log Σ_{j≠i} e^{z_j} − log Σ_j e^{z_j}, so it stays accurate where p_i rounds to 1
    (where `log1p(-softmax)` would return −inf).
    """
    z = _float(logits)
    z = z - z.max(dim=-1, keepdim=True).values.detach()  # the largest logit is now 0
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    is_top = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, z.argmax(dim=-1, keepdim=True), True)
    # Non-top classes: the remaining sum still holds the top class's e^0 = 1, so no cancellation.
    exp_z = torch.exp(z)
    rest = torch.log((exp_z.sum(dim=-1, keepdim=True) - exp_z).clamp_min(EPS))
    # The top class: sum the others directly.
    rest_top = torch.logsumexp(z.masked_fill(is_top, -math.inf), dim=-1, keepdim=True)
    return (torch.where(is_top, rest_top, rest) - lse).clamp_min(LOG_EPS)


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p(y|x), the probability of the true label; shape `(n,)`."""
    return probabilities(logits).gather(-1, labels.long()[:, None]).squeeze(-1)


def correctness(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where the arg-max prediction is the true label, else 0.0; shape `(n,)`. Not differentiable."""
    return (logits.argmax(dim=-1) == labels).to(_float(logits).dtype)


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−log p(y|x) per sample; shape `(n,)`."""
    return -log_probs(logits).gather(-1, labels.long()[:, None]).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy −Σ_i p_i log p_i of the prediction; shape `(n,)`."""
    return -(probabilities(logits) * log_probs(logits)).sum(dim=-1)


def modified_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Song & Mittal's modified entropy; shape `(n,)`.

        Mentr(p, y) = −(1 − p_y)·log p_y − Σ_{i≠y} p_i·log(1 − p_i)

    (Song & Mittal, "Systematic Evaluation of Privacy Risks of Machine Learning Models",
    USENIX Security 2021, Sec. 3.) It is 0 for a confident correct prediction and grows both
    with uncertainty and with confident mistakes.

    Differs from the function `m_entropy` in SalUn's `evaluation/SVC_MIA.py` (copied by many
    unlearning repositories), which computes a different quantity in two ways:
    - its `log_reverse_prob` is `log p` instead of `log(1 − p)`, so the non-label terms are
      `p_i·log p_i` (plain entropy terms) rather than `p_i·log(1 − p_i)`;
    - it indexes `[:, labels]` (every row, every column named by *any* label in the batch)
      instead of `[arange(n), labels]`, so once a batch holds every class each row becomes
      −Σ_i (1 − p_i)·log p_i, with the label playing no role.
    This function implements the formula of the paper, per row.
    """
    is_label = F.one_hot(labels.long(), logits.shape[-1]).bool()
    log_p = log_probs(logits)
    log_1mp = log1m_probs(logits)
    p, one_minus_p = log_p.exp(), log_1mp.exp()
    terms = torch.where(is_label, one_minus_p * log_p, p * log_1mp)
    return -terms.sum(dim=-1)


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y − max_{i≠y} z_i, positive iff the prediction is correct and unique; shape `(n,)`."""
    z = _float(logits)
    is_label = F.one_hot(labels.long(), z.shape[-1]).bool()
    true = z.gather(-1, labels.long()[:, None]).squeeze(-1)
    return true - z.masked_fill(is_label, -math.inf).max(dim=-1).values


def sorted_probs(logits: torch.Tensor, log: bool = False) -> torch.Tensor:
    """The probability vector (or, with `log`, the log-probabilities) sorted in decreasing
    order, label-free; shape `(n, C)`."""
    p = log_probs(logits) if log else probabilities(logits)
    return p.sort(dim=-1, descending=True).values


def probs_with_label(logits: torch.Tensor, labels: torch.Tensor, log: bool = False) -> torch.Tensor:
    """The probability vector (or, with `log`, the log-probabilities) followed by the one-hot
    true label; shape `(n, 2C)`."""
    p = log_probs(logits) if log else probabilities(logits)
    return torch.cat([p, F.one_hot(labels.long(), logits.shape[-1]).to(p.dtype)], dim=-1)
