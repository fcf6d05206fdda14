"""`logit-margin`: members are the samples whose true-class logit beats the others by more.

The margin m = z_y − max_{c≠y} z_c of a sample's logits z and label y goes into a logistic
regression, P(member) = sigmoid(w · (m − μ) / σ + b), fitted by Newton's method on the members
and non-members given to `fit` (μ, σ: the mean and spread of their margins). Smooth in the
logits, so it also serves in LTU's differentiable MI bank.
"""

from __future__ import annotations

import attrs
import torch

import unlearnkit as uk


@uk.config_class
class LogitMarginConfig:
    """`steps`: Newton steps of the fit; `l2`: ridge penalty on (w, b), keeping separable data finite."""

    steps: int = attrs.field(default=25, validator=uk.validators.positive)
    l2: float = attrs.field(default=1e-3, validator=uk.validators.positive)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y − max_{c≠y} z_c per sample."""
    true = logits.gather(1, labels.long().view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.long().view(-1, 1), float("-inf"))
    return true - others.max(dim=1).values


class LogitMargin(uk.MembershipAttack):
    """Logistic regression on the standardised logit margin."""

    differentiable = True

    def __init__(self, config: LogitMarginConfig):
        super().__init__(config)
        self.params: torch.Tensor | None = None  # (w, b, μ, σ)

    def fit(self, members: tuple[torch.Tensor, torch.Tensor], non_members: tuple[torch.Tensor, torch.Tensor]) -> "LogitMargin":
        """Fit (w, b) on members (target 1) and non-members (target 0)."""
        with torch.no_grad():
            m = torch.cat([margin(*members), margin(*non_members)]).double().cpu()
            target = torch.cat([torch.ones(len(members[1])), torch.zeros(len(non_members[1]))]).double()
            mu, sigma = m.mean(), m.std(unbiased=False).clamp_min(1e-12)
            x = torch.stack([(m - mu) / sigma, torch.ones_like(m)], dim=1)
            theta = torch.zeros(2, dtype=torch.float64)
            for _ in range(self.config.steps):  # Newton's method on the L2-penalised log-loss
                p = torch.sigmoid(x @ theta)
                grad = x.T @ (p - target) / len(m) + self.config.l2 * theta
                hessian = (x.T * (p * (1 - p))) @ x / len(m) + self.config.l2 * torch.eye(2, dtype=torch.float64)
                theta = theta - torch.linalg.solve(hessian, grad)
            self.params = torch.cat([theta, torch.stack([mu, sigma])]).float()
        return self

    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """P(member) per sample; differentiable w.r.t. `logits`."""
        if self.params is None:
            raise RuntimeError("logit-margin attack: call fit() before predicting")
        w, b, mu, sigma = self.params.to(logits.device)
        return torch.sigmoid(w * (margin(logits, labels.to(logits.device)) - mu) / sigma + b)
