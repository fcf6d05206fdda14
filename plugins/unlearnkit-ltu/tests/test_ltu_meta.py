"""The meta-gradients g_r and g_f against references written with raw tensors and autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit_ltu import forgetting_feedback, functional_forward, remembering_feedback

ALPHA, BETA = 0.3, 0.7


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _raw(theta: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The same two-layer network, written out: tanh(x W1ᵀ + b1) W2ᵀ + b2."""
    w1, b1, w2, b2 = theta
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


def _theta(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_(True) for p in model.parameters()]


def _data():
    g = torch.Generator().manual_seed(1)
    support_x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    support_y = torch.randint(3, (4,), generator=g)
    query_x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    query_y = torch.randint(3, (9,), generator=g)
    return support_x, support_y, query_x, query_y, [2, 3, 4]


def _reference_remember(model, support_x, support_y, query_x, query_y, sizes, *, first_order, meta_opt=True):
    theta = _theta(model)
    tune = F.cross_entropy(_raw(theta, support_x), support_y)
    if meta_opt:
        grads = torch.autograd.grad(tune, theta, create_graph=True)
        if first_order:
            grads = [g.detach() for g in grads]
        fast = [t - ALPHA * g for t, g in zip(theta, grads)]
    else:
        fast = theta
    test = sum(
        F.cross_entropy(_raw(fast, qx), qy) for qx, qy in zip(query_x.split(sizes), query_y.split(sizes))
    )
    return torch.autograd.grad(tune + BETA * test, theta)


def _remember(model, support_x, support_y, query_x, query_y, sizes, **kw):
    params = dict(model.named_parameters())
    fb = remembering_feedback(
        functional_forward(model, {}), params, support_x, support_y, query_x, query_y, sizes,
        inner_lr=ALPHA, beta=BETA, **kw,
    )
    return fb.gradient


@pytest.mark.parametrize("first_order", [False, True])
def test_remembering_gradient_matches_autograd_reference(first_order):
    model, data = _model(), _data()
    ours = _remember(model, *data, first_order=first_order)
    reference = _reference_remember(model, *data, first_order=first_order)
    torch.testing.assert_close(ours, list(reference))


def test_remembering_without_meta_opt_is_the_plain_gradient_at_theta():
    model, data = _model(), _data()
    ours = _remember(model, *data, meta_opt=False)
    torch.testing.assert_close(ours, list(_reference_remember(model, *data, first_order=False, meta_opt=False)))


def test_first_order_drops_a_nonzero_second_order_term():
    model, data = _model(), _data()
    full = torch.cat([g.reshape(-1) for g in _remember(model, *data, first_order=False)])
    first = torch.cat([g.reshape(-1) for g in _remember(model, *data, first_order=True)])
    assert (full - first).norm() > 1e-3 * full.norm()


# -- forgetting feedback ---------------------------------------------------------------------


def _mi_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Membership log-odds from the confidence p(y|x)."""
    p_true = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    return 4.0 * p_true - 1.5


def _mi_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Membership log-odds from the prediction's entropy."""
    log_p = torch.log_softmax(logits, 1)
    return 1.0 - 2.0 * -(log_p.exp() * log_p).sum(1)


def _bce(log_odds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−[t log σ(z) + (1 − t) log(1 − σ(z))], written out."""
    p = torch.sigmoid(log_odds)
    return -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean()


def _audit():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (8,), generator=g)
    targets = torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64)
    return x, y, targets


def _reference_forget(model, x, y, targets, *, first_order, meta_opt=True):
    theta = _theta(model)
    tune = _bce(_mi_confidence(_raw(theta, x), y), targets)
    if meta_opt:
        grads = torch.autograd.grad(tune, theta, create_graph=True)
        if first_order:
            grads = [g.detach() for g in grads]
        fast = [t - ALPHA * g for t, g in zip(theta, grads)]
    else:
        fast = theta
    test = _bce(_mi_entropy(_raw(fast, x), y), targets)
    return torch.autograd.grad(tune + BETA * test, theta)


def _forget(model, x, y, targets, **kw):
    fb = forgetting_feedback(
        functional_forward(model, {}), dict(model.named_parameters()), x, y, targets, _mi_confidence, _mi_entropy,
        inner_lr=ALPHA, beta=BETA, **kw,
    )
    return fb.gradient


@pytest.mark.parametrize("first_order", [False, True])
def test_forgetting_gradient_matches_autograd_reference(first_order):
    model, audit = _model(), _audit()
    torch.testing.assert_close(_forget(model, *audit, first_order=first_order), list(_reference_forget(model, *audit, first_order=first_order)))


def test_forgetting_without_meta_opt_is_the_plain_gradient_at_theta():
    model, audit = _model(), _audit()
    ours = _forget(model, *audit, meta_opt=False)
    torch.testing.assert_close(ours, list(_reference_forget(model, *audit, first_order=False, meta_opt=False)))


def test_feedback_leaves_parameters_and_their_grads_untouched():
    model, data = _model(), _data()
    before = [p.detach().clone() for p in model.parameters()]
    _remember(model, *data, first_order=False)
    _forget(model, *_audit(), first_order=False)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert all(not g.requires_grad for g in _remember(model, *data, first_order=False))


# -- helpers ---------------------------------------------------------------------------------


def test_clip_norm_bounds_the_global_norm_and_keeps_direction():
    from unlearnkit_ltu.meta import clip_norm

    g = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]
    clipped, scaled = clip_norm(g, 1.0)
    torch.testing.assert_close(torch.cat([c.reshape(-1) for c in clipped]), torch.tensor([0.6, 0.0, 0.8]))
    assert scaled
    assert clip_norm(g, 10.0) == (g, False)  # within the bound: untouched, and counted as not acting
    assert clip_norm(g, 0.0) == (g, False)  # off
    zero, scaled = clip_norm([torch.zeros(3)], 1.0)
    assert torch.isfinite(zero[0]).all() and not zero[0].any() and not scaled
