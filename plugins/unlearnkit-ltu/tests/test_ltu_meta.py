"""The meta-gradients g_r and g_f against references written with raw tensors and autograd,
on a tanh MLP and on the same MLP with a BatchNorm layer in eval mode (running statistics), and
on LTU's default path: a Conv2d + BatchNorm2d network on batch statistics with both step bounds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit_ltu import forgetting_feedback, functional_forward, remembering_feedback
from unlearnkit_ltu.meta import curvature_step, meta_tune, polyak_step

ALPHA, BETA = 0.3, 0.7
EPS = 1e-5  # BatchNorm1d's
#: (architecture, logit scale): at scale 40 the Polyak bound is below α (checked in the tests).
MODELS = [("mlp", 1.0), ("bn", 1.0), ("bn", 40.0)]


def _model(kind: str = "mlp", scale: float = 1.0) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    else:
        model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3)).double()
        bn = model[1]
        bn.running_mean.copy_(torch.randn(7, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(7, dtype=torch.float64) + 0.5)
        bn.weight.data.copy_(torch.rand(7, dtype=torch.float64) + 0.5)
        bn.bias.data.copy_(0.1 * torch.randn(7, dtype=torch.float64))
    with torch.no_grad():
        model[-1].weight.mul_(scale)
    return model.eval()


def _raw(theta: list[torch.Tensor], x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The same network, written out: tanh(x W1ᵀ + b1) W2ᵀ + b2, with BatchNorm on the running
    statistics, (h − μ) / √(σ² + ε) · γ + b, between the first layer and tanh."""
    if len(theta) == 4:
        w1, b1, w2, b2 = theta
        return torch.tanh(x @ w1.T + b1) @ w2.T + b2
    w1, b1, gamma, b, w2, b2 = theta
    bn = model[1]
    h = (x @ w1.T + b1 - bn.running_mean) / torch.sqrt(bn.running_var + EPS) * gamma + b
    return torch.tanh(h) @ w2.T + b2


def _theta(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_(True) for p in model.parameters()]


#: (polyak, curvature): the step rules, alone and together.
STEP_RULES = [(False, False), (True, False), (False, True), (True, True)]


def _inner_step(loss: torch.Tensor, grads, theta, polyak: bool, curvature: bool = False) -> float:
    """α, at most L / ‖∇L‖² with `polyak` and 1 / |gᵀHg / ‖g‖²| with `curvature`, written out
    (`grads` still carrying their graph)."""
    alpha = ALPHA
    squared = float(sum((g.detach() ** 2).sum() for g in grads))
    if polyak:
        alpha = min(alpha, float(loss.detach()) / squared)
    if curvature:
        hessian_g = torch.autograd.grad(grads, theta, grad_outputs=[g.detach() for g in grads], retain_graph=True)
        curvature_along_g = float(sum((h * g.detach()).sum() for h, g in zip(hessian_g, grads))) / squared
        alpha = min(alpha, 1 / abs(curvature_along_g))
    return alpha


def _forward(model: nn.Module):
    return functional_forward(model, dict(model.named_buffers()))


def _data():
    g = torch.Generator().manual_seed(1)
    support_x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    support_y = torch.randint(3, (4,), generator=g)
    query_x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    query_y = torch.randint(3, (9,), generator=g)
    return support_x, support_y, query_x, query_y, [2, 3, 4]


def _reference_remember(model, support_x, support_y, query_x, query_y, sizes, *, first_order, meta_opt=True, polyak=False,
                        curvature=False):
    theta = _theta(model)
    tune = F.cross_entropy(_raw(theta, support_x, model), support_y)
    if meta_opt:
        grads = torch.autograd.grad(tune, theta, create_graph=True)
        alpha = _inner_step(tune, grads, theta, polyak, curvature)
        if first_order:
            grads = [g.detach() for g in grads]
        fast = [t - alpha * g for t, g in zip(theta, grads)]
    else:
        fast = theta
    test = sum(
        F.cross_entropy(_raw(fast, qx, model), qy) for qx, qy in zip(query_x.split(sizes), query_y.split(sizes))
    )
    return torch.autograd.grad(tune + BETA * test, theta)


def _remember_feedback(model, support_x, support_y, query_x, query_y, sizes, **kw):
    return remembering_feedback(
        _forward(model), dict(model.named_parameters()), support_x, support_y, query_x, query_y, sizes,
        inner_lr=ALPHA, beta=BETA, **kw,
    )


def _remember(model, *data, **kw):
    return _remember_feedback(model, *data, **kw).gradient


@pytest.mark.parametrize("kind, scale", MODELS)
@pytest.mark.parametrize("polyak, curvature", STEP_RULES)
@pytest.mark.parametrize("first_order", [False, True])
def test_remembering_gradient_matches_autograd_reference(first_order, polyak, curvature, kind, scale):
    model, data = _model(kind, scale), _data()
    ours = _remember(model, *data, first_order=first_order, polyak=polyak, curvature=curvature)
    reference = _reference_remember(model, *data, first_order=first_order, polyak=polyak, curvature=curvature)
    torch.testing.assert_close(ours, list(reference))


@pytest.mark.parametrize("kind, scale", MODELS)
def test_remembering_without_meta_opt_is_the_plain_gradient_at_theta(kind, scale):
    model, data = _model(kind, scale), _data()
    ours = _remember(model, *data, meta_opt=False, polyak=True)
    torch.testing.assert_close(ours, list(_reference_remember(model, *data, first_order=False, meta_opt=False)))


def test_the_polyak_bound_acts_on_large_logits_only():
    """The parametrisations above cover both regimes: α itself, and the bound below it."""
    data = _data()
    assert _remember_feedback(_model("bn", 1.0), *data, polyak=True).step == ALPHA
    assert _remember_feedback(_model("bn", 40.0), *data, polyak=True).step < ALPHA / 5


def test_the_curvature_bound_acts_where_alpha_is_long_for_the_loss_s_curvature():
    """The parametrisations above cover both regimes for the curvature bound too."""
    data = _data()
    assert _remember_feedback(_model("mlp", 1.0), *data, curvature=True).step == ALPHA
    assert _remember_feedback(_model("bn", 40.0), *data, curvature=True).step < ALPHA / 5


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_curvature_step_is_one_over_the_curvature_along_the_gradient(sign):
    """L = ½ xᵀAx with A = sign · diag(1, 4, 9): along g = Ax the curvature is gᵀAg / ‖g‖²,
    convex or concave alike."""
    a = sign * torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    x = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(0.5 * (a * x * x).sum(), x, create_graph=True)
    along = float((a * g * g).sum().detach() / (g * g).sum().detach())  # (1 + 64 + 729) / (1 + 16 + 81), signed
    assert curvature_step({"x": x}, [g], 1.0) == pytest.approx(1 / abs(along))
    assert curvature_step({"x": x}, [g], 0.01) == 0.01  # never above the step it is given
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True) * x  # a zero gradient with a graph
    assert curvature_step({"x": x}, [zero], 0.3) == 0.3


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0, 1000.0])
def test_polyak_meta_tune_step_lowers_the_random_label_loss_whatever_the_logit_scale(scale):
    """Eq. 2 is a step that improves forgetting of the support set. With α fixed it overshoots
    once the logits are large (the loss rises: the collapse of a memorising BatchNorm ResNet);
    the Polyak-bounded step lowers it at every scale."""
    model = _model("bn", scale)
    params = dict(model.named_parameters())
    support_x, support_y = _data()[:2]
    forward = _forward(model)

    def tune_loss(p):
        return F.cross_entropy(forward(p, support_x), support_y)

    for polyak in (False, True):
        loss, grads, fast, step = meta_tune(params, tune_loss, ALPHA, first_order=True, polyak=polyak)
        after = tune_loss({n: t.detach() for n, t in fast.items()})
        if polyak:
            assert after < loss and step == pytest.approx(polyak_step(loss, grads, ALPHA))
        elif scale >= 1000:
            assert after > loss  # the fixed step overshoots: what the bound is for


def test_polyak_step_is_alpha_for_a_zero_gradient_and_never_negative():
    zero = [torch.zeros(3)]
    assert polyak_step(torch.tensor(2.0), zero, 0.05) == 0.05
    assert polyak_step(torch.tensor(-1.0), [torch.ones(3)], 0.05) == 0.0
    assert polyak_step(torch.tensor(3.0), [torch.full((3,), 10.0)], 0.05) == pytest.approx(3.0 / 300)


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


def _reference_forget(model, x, y, targets, *, first_order, meta_opt=True, polyak=False, curvature=False):
    theta = _theta(model)
    tune = _bce(_mi_confidence(_raw(theta, x, model), y), targets)
    if meta_opt:
        grads = torch.autograd.grad(tune, theta, create_graph=True)
        alpha = _inner_step(tune, grads, theta, polyak, curvature)
        if first_order:
            grads = [g.detach() for g in grads]
        fast = [t - alpha * g for t, g in zip(theta, grads)]
    else:
        fast = theta
    test = _bce(_mi_entropy(_raw(fast, x, model), y), targets)
    return torch.autograd.grad(tune + BETA * test, theta)


def _forget(model, x, y, targets, **kw):
    fb = forgetting_feedback(
        _forward(model), dict(model.named_parameters()), x, y, targets, _mi_confidence, _mi_entropy,
        inner_lr=ALPHA, beta=BETA, **kw,
    )
    return fb.gradient


@pytest.mark.parametrize("kind, scale", MODELS)
@pytest.mark.parametrize("polyak, curvature", STEP_RULES)
@pytest.mark.parametrize("first_order", [False, True])
def test_forgetting_gradient_matches_autograd_reference(first_order, polyak, curvature, kind, scale):
    model, audit = _model(kind, scale), _audit()
    ours = _forget(model, *audit, first_order=first_order, polyak=polyak, curvature=curvature)
    reference = _reference_forget(model, *audit, first_order=first_order, polyak=polyak, curvature=curvature)
    torch.testing.assert_close(ours, list(reference))


@pytest.mark.parametrize("kind, scale", MODELS)
def test_forgetting_without_meta_opt_is_the_plain_gradient_at_theta(kind, scale):
    model, audit = _model(kind, scale), _audit()
    ours = _forget(model, *audit, meta_opt=False, polyak=True)
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


def _raw_batch_stats(theta: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The BatchNorm MLP of `_raw` normalised with the statistics of the batch `x` (biased variance)."""
    w1, b1, gamma, b, w2, b2 = theta
    h = x @ w1.T + b1
    h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + EPS) * gamma + b
    return torch.tanh(h) @ w2.T + b2


@pytest.mark.parametrize("first_order", [False, True])
def test_with_batch_statistics_the_query_sets_are_normalised_together_with_the_support(first_order):
    """batch_norm = "batch" on a BatchNorm model: the meta-tune step on the statistics of S_r, the
    query loss at θ' on those of S_r ∪ Q (the support as context, out of the loss)."""
    model = _model("bn")
    support_x, support_y, query_x, query_y, sizes = _data()
    forward = functional_forward(model, dict(model.named_buffers()), batch_stats=True, twice_differentiable=True)
    ours = remembering_feedback(
        forward, dict(model.named_parameters()), support_x, support_y, query_x, query_y, sizes,
        inner_lr=ALPHA, beta=BETA, first_order=first_order, support_context=True,
    ).gradient
    theta = _theta(model)
    tune = F.cross_entropy(_raw_batch_stats(theta, support_x), support_y)
    grads = torch.autograd.grad(tune, theta, create_graph=not first_order, retain_graph=True)
    fast = [t - ALPHA * g for t, g in zip(theta, grads)]
    logits = _raw_batch_stats(fast, torch.cat([support_x, query_x]))[len(support_x):]
    test = sum(F.cross_entropy(lq, yq) for lq, yq in zip(logits.split(sizes), query_y.split(sizes)))
    torch.testing.assert_close(ours, list(torch.autograd.grad(tune + BETA * test, theta)))


# -- LTU's default path: batch statistics with the polyak and curvature bounds ----------------


def _conv_model(scale: float) -> nn.Module:
    """A small Conv2d + BatchNorm2d network (in eval mode, as LTU holds it), last layer × `scale`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.rand(3, dtype=torch.float64) + 0.5)
        model[1].bias.copy_(0.1 * torch.randn(3, dtype=torch.float64))
        model[-1].weight.mul_(scale)
    return model.eval()


def _raw_conv(theta: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The Conv2d network written out, BatchNorm2d on the statistics of the batch `x` per channel
    (over samples and positions, biased variance)."""
    w, b, gamma, beta, w_out, b_out = theta
    h = F.conv2d(x, w, b)
    mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
    h = (h - mean) / torch.sqrt(var + EPS) * gamma[:, None, None] + beta[:, None, None]
    return torch.tanh(h).flatten(1) @ w_out.T + b_out


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)


def _default_forward(model: nn.Module):
    """The forward LTU builds at its defaults (batch_norm = "batch", second order)."""
    return functional_forward(model, dict(model.named_buffers()), batch_stats=True, twice_differentiable=True)


def _reference_meta_gradient(theta, tune: torch.Tensor, test_at, first_order: bool):
    """∇[L_tune(θ) + β L_test(θ')], θ' = θ − α_t ∇L_tune, α_t from both bounds, written out."""
    grads = torch.autograd.grad(tune, theta, create_graph=True)
    alpha = _inner_step(tune, grads, theta, polyak=True, curvature=True)
    if first_order:
        grads = [g.detach() for g in grads]
    test = test_at([t - alpha * g for t, g in zip(theta, grads)])
    return alpha, list(torch.autograd.grad(tune + BETA * test, theta))


#: Logit scales: at 1 the step is α; at 5 a bound acts, Polyak's on g_r and the curvature's on g_f.
CONV_SCALES = [1.0, 5.0]


@pytest.mark.parametrize("scale", CONV_SCALES)
@pytest.mark.parametrize("first_order", [False, True])
def test_default_remembering_gradient_of_a_conv_batch_norm_model_matches_autograd_reference(first_order, scale):
    """The query sets at θ' normalised with the statistics of S_r ∪ Q, the support out of the loss."""
    model = _conv_model(scale)
    (support_x, support_y), (query_x, query_y), sizes = _images(4, 1), _images(9, 2), [2, 3, 4]
    ours = remembering_feedback(
        _default_forward(model), dict(model.named_parameters()), support_x, support_y, query_x, query_y, sizes,
        inner_lr=ALPHA, beta=BETA, first_order=first_order, polyak=True, curvature=True, support_context=True,
    )
    theta = _theta(model)

    def query_loss(fast):
        logits = _raw_conv(fast, torch.cat([support_x, query_x]))[len(support_x):]
        return sum(F.cross_entropy(lq, yq) for lq, yq in zip(logits.split(sizes), query_y.split(sizes)))

    tune = F.cross_entropy(_raw_conv(theta, support_x), support_y)
    alpha, reference = _reference_meta_gradient(theta, tune, query_loss, first_order)
    assert ours.step == pytest.approx(alpha) and (alpha < ALPHA) == (scale > 1)
    torch.testing.assert_close(ours.gradient, reference)


@pytest.mark.parametrize("scale", CONV_SCALES)
@pytest.mark.parametrize("first_order", [False, True])
def test_default_forgetting_gradient_of_a_conv_batch_norm_model_matches_autograd_reference(first_order, scale):
    """The audit set normalised with its own statistics at θ and at θ''."""
    model = _conv_model(scale)
    x, y = _images(8, 3)
    targets = torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64)
    ours = forgetting_feedback(
        _default_forward(model), dict(model.named_parameters()), x, y, targets, _mi_confidence, _mi_entropy,
        inner_lr=ALPHA, beta=BETA, first_order=first_order, polyak=True, curvature=True,
    )
    theta = _theta(model)
    tune = _bce(_mi_confidence(_raw_conv(theta, x), y), targets)

    def query_loss(fast):
        return _bce(_mi_entropy(_raw_conv(fast, x), y), targets)

    alpha, reference = _reference_meta_gradient(theta, tune, query_loss, first_order)
    assert ours.step == pytest.approx(alpha) and (alpha < ALPHA) == (scale > 1)
    torch.testing.assert_close(ours.gradient, reference)
