"""Small in-process test doubles for LTU's components, registered under `test-*` names.

LTU finds samplers, MI attacks and combiners by name only; these doubles let its tests run
without the real plugins and count how often each is used.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit import config_class
from unlearnkit.testing import trained_tiny_model


@config_class
class NoConfig:
    """No settings."""


class UniformSampler(uk.Sampler):
    """k distinct pool positions uniformly at random; counts its calls in `calls`."""

    def __init__(self, config: Any, calls: Counter):
        super().__init__(config)
        self.calls = calls

    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: Any) -> None:
        self.calls["prepare"] += 1
        self.n = len(pool_x)

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        self.calls["sample"] += 1
        return torch.randperm(self.n, generator=generator)[:k]


class InputNNSampler(UniformSampler):
    """The k pool samples nearest (L2 on raw inputs) to any support sample."""

    def prepare(self, pool_x: torch.Tensor, pool_y: torch.Tensor, model: Any) -> None:
        super().prepare(pool_x, pool_y, model)
        self.pool = pool_x.reshape(len(pool_x), -1)

    def sample(self, support_x: torch.Tensor, support_y: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        self.calls["sample"] += 1
        distance = torch.cdist(self.pool, support_x.reshape(len(support_x), -1).to(self.pool)).min(1).values
        return torch.sort(distance, stable=True).indices[:k]


def _features(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits, dim=1)
    true = log_p.gather(1, labels[:, None])
    if kind == "loss":
        return true
    entropy = -(log_p.exp() * log_p).sum(1, keepdim=True)
    return torch.cat([true.exp(), entropy], dim=1)


class LogisticAttack(uk.MembershipAttack):
    """Logistic regression on logit features (`loss`: log p(y|x); `confidence`: p(y|x), entropy)."""

    differentiable = True

    def __init__(self, config: Any, kind: str, calls: Counter):
        super().__init__(config)
        self.kind, self.calls = kind, calls

    def fit(self, members: Any, non_members: Any) -> "LogisticAttack":
        self.calls["fit"] += 1
        x = torch.cat([_features(self.kind, *members), _features(self.kind, *non_members)]).detach().double()
        t = torch.cat([torch.ones(len(members[1])), torch.zeros(len(non_members[1]))]).to(x)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        w = torch.zeros(x.shape[1] + 1, dtype=x.dtype, requires_grad=True)
        z = torch.cat([(x - self.mean) / self.std, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        optimizer = torch.optim.LBFGS([w], max_iter=50)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(z @ w, t) + 1e-3 * (w * w).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.w = w.detach()
        return self

    def predict_proba(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls["predict_proba"] += 1
        z = (_features(self.kind, logits, labels) - self.mean.to(logits)) / self.std.to(logits)
        w = self.w.to(logits)
        return torch.sigmoid(z @ w[:-1] + w[-1])


class NonDifferentiableAttack(LogisticAttack):
    differentiable = False


class RecordingCombiner(uk.GradientCombiner):
    """`sum` or `project` (eq. 12, protecting g_r); records every call's inputs and output."""

    def __init__(self, config: Any, how: str, calls: Counter, log: list):
        super().__init__(config)
        self.how, self.calls, self.log = how, calls, log

    def reset(self) -> None:
        self.calls["reset"] += 1

    def combine(self, g_remember: Any, g_forget: Any) -> list[torch.Tensor]:
        self.calls["combine"] += 1
        r = torch.cat([g.reshape(-1) for g in g_remember])
        f = torch.cat([g.reshape(-1) for g in g_forget])
        dot = (r * f).sum()
        scale = dot / (r * r).sum() if self.how == "project" and dot < 0 else 0.0
        out = [gr + gf - scale * gr for gr, gf in zip(g_remember, g_forget)]
        self.log.append(([g.clone() for g in g_remember], [g.clone() for g in g_forget], [o.clone() for o in out]))
        return out


class Doubles:
    """The registered doubles and their call counters (one Counter per component name)."""

    samplers = ("test-random", "test-input-nn")
    bank = ("test-mi-loss", "test-mi-confidence")

    def __init__(self, register: Callable[..., Any]):
        self.calls: dict[str, Counter] = {}
        self.combined: list = []
        self.register = register
        for name, cls in (("test-random", UniformSampler), ("test-input-nn", InputNNSampler)):
            register("sampler", name, lambda cfg, cls=cls, c=self._counter(name): cls(cfg, c), NoConfig)
        for name, kind in (("test-mi-loss", "loss"), ("test-mi-confidence", "confidence")):
            register("attack", name, lambda cfg, kind=kind, c=self._counter(name): LogisticAttack(cfg, kind, c), NoConfig)
        register("attack", "test-mi-nondiff", lambda cfg: NonDifferentiableAttack(cfg, "loss", Counter()), NoConfig)
        for name, how in (("test-sum", "sum"), ("test-project", "project")):
            register(
                "combiner", name, lambda cfg, how=how, c=self._counter(name): RecordingCombiner(cfg, how, c, self.combined), NoConfig
            )

    def _counter(self, name: str) -> Counter:
        self.calls[name] = Counter()
        return self.calls[name]

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An LTU config using the doubles, short enough for unit tests."""
        base = dict(
            samplers=self.samplers, bank=self.bank, combiner="test-project", iterations=4, forget_batch_size=8,
            query_size=8, inner_lr=0.1, lr=0.05,
        )
        return {**base, **overrides}


@pytest.fixture
def doubles(register_component: Callable[..., Any]) -> Doubles:
    """Test doubles registered for one test."""
    return Doubles(register_component)


@pytest.fixture
def tiny() -> tuple[torch.nn.Module, Any]:
    """A trained tiny MLP and its task (cached per process; a fresh model each call)."""
    return trained_tiny_model(0)
