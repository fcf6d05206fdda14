"""Differentiable membership-inference models for LTU's forgetting-feedback bank.

Each model maps a classifier's logits (and labels) to P(member) through torch operations
only, so LTU can use it as a loss and backpropagate into the classifier (LTU.md, "Forgetting
feedback", step 1). The three differ in architecture and input, as the paper asks:
`mi-logreg` (logistic regression on [confidence, entropy, logit margin]), `mi-mlp-sorted`
(an MLP on the sorted probability vector) and `mi-mlp-label` (an MLP on the probability
vector and the one-hot label).
"""

from __future__ import annotations

from abc import abstractmethod

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit import MembershipAttack, check_finite_loss, config_class
from unlearnkit.validators import in_range, non_negative, one_of, positive

from unlearnkit_attacks import features as feat

__all__ = ["MiLogReg", "MiLogRegConfig", "MiMlpConfig", "MiMlpLabel", "MiMlpSorted", "NeuralMIAttack"]


BALANCE = ("weight", "subsample")


@config_class
class MiLogRegConfig:
    """Full-batch Adam on the balanced BCE for up to `steps` steps; `seed` fixes the initial
    weights, the subsample and the held-out split. `balance`: "weight" gives each side half the
    loss whatever its size; "subsample" trains on equally many of each, a seeded sample of the
    larger side. `holdout`: the fraction of each side kept out of training; the returned model
    is the one of the step (checked every `check_every`) with the lowest balanced BCE on it, and
    fitting ends after `patience` checks without a better one (0 = no held-out part: the model
    after `steps` steps)."""

    steps: int = attrs.field(default=300, validator=positive)
    lr: float = attrs.field(default=0.05, validator=positive)
    weight_decay: float = attrs.field(default=0.0, validator=non_negative)
    balance: str = attrs.field(default="weight", validator=one_of(*BALANCE))
    holdout: float = attrs.field(default=0.2, validator=in_range(0.0, 0.5, high_open=True))
    check_every: int = attrs.field(default=10, validator=positive)
    patience: int = attrs.field(default=5, validator=positive)
    seed: int = attrs.field(default=0, validator=non_negative)


@config_class
class MiMlpConfig:
    """An MLP with SiLU hidden layers of the `hidden` widths, trained like `MiLogRegConfig`.

    `inputs`: "log-prob" feeds the log-probabilities, "prob" the probabilities themselves.
    """

    inputs: str = attrs.field(default="log-prob", validator=one_of("log-prob", "prob"))
    hidden: tuple[int, ...] = attrs.field(default=(64, 64), validator=attrs.validators.deep_iterable(positive))
    steps: int = attrs.field(default=300, validator=positive)
    lr: float = attrs.field(default=0.01, validator=positive)
    weight_decay: float = attrs.field(default=1e-4, validator=non_negative)
    balance: str = attrs.field(default="subsample", validator=one_of(*BALANCE))
    holdout: float = attrs.field(default=0.2, validator=in_range(0.0, 0.5, high_open=True))
    check_every: int = attrs.field(default=10, validator=positive)
    patience: int = attrs.field(default=5, validator=positive)
    seed: int = attrs.field(default=0, validator=non_negative)


class _Standardize(nn.Module):
    """(x − mean) / std with statistics fixed at fit time."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _split(x: torch.Tensor, fraction: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (train, held-out) split of the rows of `x`; `fraction` of them held out."""
    n_held = int(round(fraction * len(x))) if len(x) > 1 else 0
    order = torch.randperm(len(x), generator=g).to(x.device)
    return x[order[n_held:].sort().values], x[order[:n_held].sort().values]


def _balanced(x_in: torch.Tensor, x_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets (1 = member) and weights giving each side half the loss."""
    device, n_in, n_out = x_in.device, len(x_in), len(x_out)
    target = torch.cat([torch.ones(n_in, device=device), torch.zeros(n_out, device=device)])
    weight = torch.cat([torch.full((n_in,), 0.5 / n_in, device=device), torch.full((n_out,), 0.5 / n_out, device=device)])
    return torch.cat([x_in, x_out]), target, weight


def _balanced_bce(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (weight * F.binary_cross_entropy_with_logits(out, target, reduction="none")).sum()


def _mlp(dim: int, hidden: tuple[int, ...]) -> nn.Module:
    # [choice] SiLU, not ReLU: smooth, so LTU's second-order meta-gradient sees the model's
    # curvature, and no input region where every unit is off and the gradient is exactly zero.
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(dim, width), nn.SiLU()]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, 1))


class NeuralMIAttack(MembershipAttack):
    """A small torch model on a differentiable signal of the logits, trained with balanced BCE.

    `fit` runs on the device of the members' logits: inputs are standardised with statistics
    stored at fit time, members and non-members weigh half the loss each whatever their counts
    (LTU fits D̂_r members against D_val non-members), and afterwards the model's parameters
    no longer require gradients (LTU backpropagates only into the classifier).
    `predict_proba(logits, labels)` keeps the autograd graph to `logits` and moves the model to
    the logits' device when they differ.
    """

    differentiable = True

    def __init__(self, config: MiLogRegConfig | MiMlpConfig):
        super().__init__(config)
        self.model: nn.Module | None = None
        self.num_classes: int | None = None

    @abstractmethod
    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The model's input, `(n, d)`, a differentiable function of `logits`."""

    @abstractmethod
    def build_net(self, dim: int) -> nn.Module:
        """An untrained network from `dim` standardised inputs to one membership logit."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"

    def fit(
        self, members: tuple[torch.Tensor, torch.Tensor], non_members: tuple[torch.Tensor, torch.Tensor]
    ) -> "NeuralMIAttack":
        """Train on members (target 1) against non-members (target 0)."""
        (m_logits, m_labels), (n_logits, n_labels) = members, non_members
        if len(m_logits) == 0 or len(n_logits) == 0:
            raise ValueError(f"{type(self).__name__} needs members and non-members, got {len(m_logits)} and {len(n_logits)}")
        if m_logits.shape[1:] != n_logits.shape[1:]:
            raise ValueError(f"members' logits {tuple(m_logits.shape)} and non-members' {tuple(n_logits.shape)} differ in classes")
        device = m_logits.device
        self.num_classes = int(m_logits.shape[-1])
        with torch.no_grad():
            x_in = self._inputs(m_logits.detach(), m_labels.to(device))
            x_out = self._inputs(n_logits.detach().to(device), n_labels.to(device))
        if self.config.balance == "subsample":
            x_in, x_out = self._subsample(x_in, x_out)
        g = torch.Generator().manual_seed(self.config.seed)
        (x_in, held_in), (x_out, held_out) = _split(x_in, self.config.holdout, g), _split(x_out, self.config.holdout, g)
        x, target, weight = _balanced(x_in, x_out)
        mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant input stays as it is
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            net = self.build_net(x.shape[1])
        model = nn.Sequential(_Standardize(mean.cpu(), std.cpu()), net).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        held = _balanced(held_in, held_out) if len(held_in) and len(held_out) else None
        best, since_best = (float("inf"), None, 0), 0
        for step in range(self.config.steps + 1):
            if held is not None and (step % self.config.check_every == 0 or step == self.config.steps):
                best = self._keep_best(model, held, best, step)
                since_best = 0 if best[2] == step else since_best + 1
                if since_best >= self.config.patience:
                    break
            if step == self.config.steps:
                break
            loss = _balanced_bce(model(x).squeeze(-1), target, weight)
            check_finite_loss(loss, type(self).__name__, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if best[1] is not None:
            model.load_state_dict(best[1])
        self.model = model.eval().requires_grad_(False)
        return self

    @staticmethod
    def _keep_best(model: nn.Module, held: tuple, best: tuple, step: int) -> tuple:
        """(held-out loss, state, step) of the better of `best` and `model` now (the latest on ties)."""
        with torch.no_grad():
            loss = float(_balanced_bce(model(held[0]).squeeze(-1), held[1], held[2]))
        if loss <= best[0]:
            return loss, {k: v.clone() for k, v in model.state_dict().items()}, step
        return best

    def _subsample(self, x_in: torch.Tensor, x_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(len(x_in), len(x_out))
        g = torch.Generator().manual_seed(self.config.seed)
        keep_in = torch.randperm(len(x_in), generator=g)[:n].sort().values.to(x_in.device)
        keep_out = torch.randperm(len(x_out), generator=g)[:n].sort().values.to(x_out.device)
        return x_in[keep_in], x_out[keep_out]

    def _inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.features(logits, labels).float()

    def membership_logit(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log-odds of membership, `(n,)`, differentiable w.r.t. `logits` (use with BCE-with-logits)."""
        if self.model is None:
            raise RuntimeError(f"{self!r}: call fit() before predicting")
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"{type(self).__name__} was fitted on {self.num_classes} classes, got logits of shape {tuple(logits.shape)}")
        if next(self.model.buffers()).device != logits.device:
            self.model = self.model.to(logits.device)
        return self.model(self._inputs(logits, labels.to(logits.device))).squeeze(-1)

    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """P(member), `(n,)`, differentiable w.r.t. `logits`."""
        return torch.sigmoid(self.membership_logit(logits, labels))


class MiLogReg(NeuralMIAttack):
    """Logistic regression on [confidence p(y|x), entropy of p, logit margin z_y − max_{i≠y} z_i]."""

    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [feat.confidence(logits, labels), feat.entropy(logits), feat.logit_margin(logits, labels)], dim=-1
        )

    def build_net(self, dim: int) -> nn.Module:
        return nn.Linear(dim, 1)


class MiMlpSorted(NeuralMIAttack):
    """An MLP on the probability vector sorted in decreasing order (label-free).

    [choice] By default it reads the vector in log space (`inputs="log-prob"`), which carries
    the same information: probabilities saturate, so on a confident model (members *and* most
    non-members near p = 1) their gradients vanish and less confident outputs land far outside
    the fitted range, where the model saturates too; log-probabilities keep both in hand.
    """

    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return feat.sorted_probs(logits, log=self.config.inputs == "log-prob")

    def build_net(self, dim: int) -> nn.Module:
        return _mlp(dim, tuple(self.config.hidden))


class MiMlpLabel(NeuralMIAttack):
    """An MLP on the probability vector concatenated with the one-hot true label (the vector
    in log space by default, as for `MiMlpSorted`)."""

    def features(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return feat.probs_with_label(logits, labels, log=self.config.inputs == "log-prob")

    def build_net(self, dim: int) -> nn.Module:
        return _mlp(dim, tuple(self.config.hidden))
