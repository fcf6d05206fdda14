"""SalUn's SVC membership-inference attacks: an RBF support-vector classifier on one signal.

`svc-confidence` is the paper's MI column ("MIA-efficacy"): an SVC (C=3, gamma="auto") trained
on the confidence p(y|x) of members (label 1) against non-members (label 0). Its siblings
swap the signal; they share this one implementation.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import numpy as np
import torch
from sklearn.svm import SVC

from unlearnkit import MembershipAttack, config_class
from unlearnkit.validators import FieldError, non_negative, positive

from unlearnkit_attacks import features as feat

__all__ = ["SVC_FEATURES", "SvcAttack", "SvcConfig"]


def _column(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda logits, labels: fn(logits, labels)[:, None]


#: Attack name suffix -> signal, each an `(n, d)` array of SVC inputs.
SVC_FEATURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "confidence": _column(feat.confidence),
    "entropy": _column(lambda logits, labels: feat.entropy(logits)),
    "m-entropy": _column(feat.modified_entropy),
    "prob": lambda logits, labels: feat.probabilities(logits),
    "correctness": _column(feat.correctness),
}


def _gamma(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value in ("auto", "scale"):
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(attribute.name, f"must be 'auto', 'scale' or a positive number, got {value!r}") from None
    if not number > 0 or not np.isfinite(number):
        raise FieldError(attribute.name, f"must be 'auto', 'scale' or a positive number, got {value!r}")


@config_class
class SvcConfig:
    """An RBF SVC on one membership signal (SalUn's defaults).

    `gamma` is scikit-learn's: "auto" (1 / number of features), "scale", or a positive number
    written as a string. `max_fit_samples` > 0 caps each side of the training data at that many
    samples, drawn with `seed` (0 = use everything, as SalUn does).
    """

    C: float = attrs.field(default=3.0, validator=positive)
    gamma: str = attrs.field(default="auto", validator=_gamma)
    max_fit_samples: int = attrs.field(default=0, validator=non_negative)
    seed: int = attrs.field(default=0, validator=non_negative)


class SvcAttack(MembershipAttack):
    """An RBF SVC on the signal `feature` (a key of `SVC_FEATURES`).

    `predict_proba` is the logistic sigmoid of the SVC's decision function: below 0.5 exactly
    where `SVC.predict` says non-member, and graded, so it also ranks samples (for AUC).
    """

    differentiable = False

    def __init__(self, config: SvcConfig, feature: str = "confidence"):
        super().__init__(config)
        if feature not in SVC_FEATURES:
            raise ValueError(f"unknown SVC feature {feature!r}; expected one of {', '.join(SVC_FEATURES)}")
        self.feature = feature
        self.svc: SVC | None = None

    def __repr__(self) -> str:
        return f"SvcAttack(feature={self.feature!r}, config={self.config!r})"

    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """The SVC's inputs for these samples, shape `(n, d)`, float64."""
        with torch.no_grad():
            x = SVC_FEATURES[self.feature](logits.detach().cpu().double(), labels.detach().cpu())
        return x.numpy()

    def fit(
        self, members: tuple[torch.Tensor, torch.Tensor], non_members: tuple[torch.Tensor, torch.Tensor]
    ) -> "SvcAttack":
        """Train the SVC: members' signals as class 1, non-members' as class 0."""
        x_in, x_out = self.features(*members), self.features(*non_members)
        if len(x_in) == 0 or len(x_out) == 0:
            raise ValueError(f"{self.feature} SVC attack needs members and non-members, got {len(x_in)} and {len(x_out)}")
        x_in, x_out = self._cap(x_in, 0), self._cap(x_out, 1)
        x = np.concatenate([x_in, x_out])
        y = np.concatenate([np.ones(len(x_in)), np.zeros(len(x_out))])
        gamma = self.config.gamma if self.config.gamma in ("auto", "scale") else float(self.config.gamma)
        self.svc = SVC(C=self.config.C, gamma=gamma, kernel="rbf").fit(x, y)
        return self

    def _cap(self, x: np.ndarray, side: int) -> np.ndarray:
        cap = self.config.max_fit_samples
        if cap == 0 or len(x) <= cap:
            return x
        g = torch.Generator().manual_seed(self.config.seed * 2 + side)
        return x[torch.randperm(len(x), generator=g)[:cap].sort().values.numpy()]

    def decision_function(self, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """Signed distance to the SVC's boundary; positive means member. Shape `(n,)`, float64."""
        if self.svc is None:
            raise RuntimeError(f"{self!r}: call fit() before predicting")
        if len(logits) == 0:
            return np.zeros(0)
        return self.svc.decision_function(self.features(logits, labels))

    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """P(member) = sigmoid(decision function), < 0.5 exactly where the SVC predicts non-member."""
        d = torch.from_numpy(self.decision_function(logits, labels))
        p = torch.sigmoid(d).float()
        # float32 rounding may lift sigmoid(-tiny) to 0.5; keep the SVC's side of the boundary.
        below_half = torch.nextafter(torch.tensor(0.5), torch.tensor(0.0))
        p = torch.where(d < 0, torch.minimum(p, below_half), p)
        return p.to(logits.device)
