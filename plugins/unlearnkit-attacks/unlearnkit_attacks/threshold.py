"""Yeom et al.'s loss-threshold attack: a sample is a member iff its loss is small."""

from __future__ import annotations

import attrs
import torch

from unlearnkit import MembershipAttack, config_class
from unlearnkit.validators import non_negative

from unlearnkit_attacks.features import cross_entropy_loss

__all__ = ["LossThresholdAttack", "LossThresholdConfig", "best_threshold"]


@config_class
class LossThresholdConfig:
    """`scale` sets how fast P(member) falls with the loss around the threshold;
    0 = the standard deviation of the losses seen by `fit`."""

    scale: float = attrs.field(default=0.0, validator=non_negative)


def best_threshold(member_loss: torch.Tensor, non_member_loss: torch.Tensor) -> float:
    """The threshold t maximising the balanced accuracy of "member iff loss ≤ t".

    Candidates are the midpoints between consecutive distinct losses (and a point below and
    above them all), so no fitted loss lies on the threshold; ties go to the smallest t.
    """
    losses = torch.cat([member_loss, non_member_loss]).double().unique()  # sorted
    below, above = losses[:1] - 1.0, losses[-1:] + 1.0
    candidates = torch.cat([below, (losses[1:] + losses[:-1]) / 2, above])
    m = member_loss.double().sort().values
    n = non_member_loss.double().sort().values
    tpr = torch.searchsorted(m, candidates, right=True).double() / len(m)  # members with loss ≤ t
    tnr = 1.0 - torch.searchsorted(n, candidates, right=True).double() / len(n)  # non-members with loss > t
    return float(candidates[torch.argmax((tpr + tnr) / 2)])


class LossThresholdAttack(MembershipAttack):
    """Member iff the cross-entropy loss is at most a threshold fitted on the shadow sets.

    (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018.) Yeom's attack thresholds at
    the average training loss; here [choice] the threshold maximises balanced accuracy on the
    members and non-members given to `fit`. `predict_proba` = sigmoid((t − loss) / scale):
    exactly 0.5 at the threshold, below 0.5 exactly where the loss exceeds it.
    """

    differentiable = False

    def __init__(self, config: LossThresholdConfig):
        super().__init__(config)
        self.threshold: float | None = None
        self.scale: float | None = None

    def fit(
        self, members: tuple[torch.Tensor, torch.Tensor], non_members: tuple[torch.Tensor, torch.Tensor]
    ) -> "LossThresholdAttack":
        """Choose the threshold (and the scale when the config leaves it at 0)."""
        with torch.no_grad():
            member_loss = cross_entropy_loss(members[0].detach().double(), members[1]).cpu()
            non_member_loss = cross_entropy_loss(non_members[0].detach().double(), non_members[1]).cpu()
        if len(member_loss) == 0 or len(non_member_loss) == 0:
            raise ValueError(f"loss-threshold needs members and non-members, got {len(member_loss)} and {len(non_member_loss)}")
        self.threshold = best_threshold(member_loss, non_member_loss)
        spread = float(torch.cat([member_loss, non_member_loss]).std(unbiased=False))
        self.scale = self.config.scale or (spread if spread > 0 else 1.0)
        return self

    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """P(member) = sigmoid((threshold − loss) / scale)."""
        if self.threshold is None:
            raise RuntimeError("loss-threshold attack: call fit() before predicting")
        with torch.no_grad():
            loss = cross_entropy_loss(logits.detach().double(), labels.to(logits.device))
            p = torch.sigmoid((self.threshold - loss) / self.scale).float()
            below_half = torch.nextafter(torch.tensor(0.5), torch.tensor(0.0)).to(p.device)
            return torch.where(loss > self.threshold, torch.minimum(p, below_half), p)
