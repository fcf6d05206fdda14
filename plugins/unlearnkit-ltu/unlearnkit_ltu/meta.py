"""LTU's meta-optimisation scheme, one function per phase, on parameter dictionaries.

The model is evaluated functionally, `torch.func.functional_call(model, (params, buffers), x)`,
so the temporary weights θ' and θ'' are plain dictionaries of tensors built by one dict
comprehension: no model copy per step. With `first_order=False` the inner gradient keeps its
graph (`create_graph=True`) and the meta-gradient holds the second-order term, as in MAML;
with `first_order=True` the inner gradient is detached (first-order MAML).

Step size (beyond the paper, `polyak=True`): the meta-tune step is min(α, L_tune / ‖∇L_tune‖²),
at most the Polyak step, the one that takes L_tune to zero to first order; with `curvature=True`
also at most 1/|λ|, λ = gᵀHg / ‖g‖² the curvature of L_tune along its gradient g (one
Hessian-vector product). Either is a number (no graph), so the meta-gradient is MAML's with that
α. `Feedback.step` reports it.

Data parallelism: with `test_part` (this rank's positions in the query or audit set) and
`reduce` (an in-place sum across ranks), the inner step runs on the whole support or audit set
on every rank — it defines θ' and θ'' — while each rank takes the meta-test loss on its part
only, weighted so that the parts sum to the whole loss; `reduce` sums the meta-test gradients
before they join the (identical) inner-step gradient. The result equals one process's.

Equation numbers refer to the paper (arXiv 2407.10494).
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import unlearnkit as uk

Params = dict[str, torch.Tensor]
Reduce = Callable[[list[torch.Tensor]], None]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]
MembershipModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> log-odds of membership


class Feedback(NamedTuple):
    """One feedback gradient (a tensor per parameter, no graph) and its detached losses."""

    gradient: list[torch.Tensor]
    tune_loss: torch.Tensor  # L_tune(θ), eq. 1 / 11
    test_loss: torch.Tensor  # L_test(θ') (at θ without meta-optimisation), eq. 3
    step: float  # the meta-tune step size α_t (the one θ' was built with, or would have been)


def functional_forward(
    model: nn.Module, buffers: Params, *, batch_stats: bool = False, twice_differentiable: bool = False
) -> Forward:
    """`forward(params, x)`: the logits of `model` (in eval mode) with parameters `params` and `buffers`.

    `batch_stats`: BatchNorm layers normalise with the statistics of `x` (a batch of two or
    more), as in training; their running statistics are neither read nor updated (updates go
    to a scratch copy). A single sample, which has no batch statistics, uses the running ones.
    Every other module stays in eval mode (no dropout). `twice_differentiable` computes
    attention with PyTorch's math kernel, the one whose backward can itself be differentiated
    (the fused CPU and GPU kernels cannot), as the second-order meta-gradient of a transformer needs.
    """
    norms = [m for m in model.modules() if isinstance(m, uk.BATCH_NORMS)] if batch_stats else []
    scratch = {name: b.clone() for name, b in buffers.items()} if norms else buffers

    def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
        on_batch = bool(norms) and len(x) > 1
        for m in norms:
            m.train(on_batch)
        try:
            with sdpa_kernel(SDPBackend.MATH) if twice_differentiable else contextlib.nullcontext():
                return functional_call(model, (params, scratch if on_batch else buffers), (x,))
        finally:
            for m in norms:
                m.eval()

    return forward


def polyak_step(loss: torch.Tensor, grads: Sequence[torch.Tensor], inner_lr: float) -> float:
    """min(α, L / ‖∇L‖²): the step along −∇L that takes L to zero to first order, at most α
    (α when the gradient is zero)."""
    squared = float(sum(g.detach().double().pow(2).sum() for g in grads))
    return min(inner_lr, max(float(loss.detach()), 0.0) / squared) if squared > 0 else inner_lr


def curvature_step(params: Params, grads: Sequence[torch.Tensor], step: float) -> float:
    """min(step, 1/|λ|), λ = gᵀHg / ‖g‖² the curvature along the gradient g (built with a graph):
    the step within which L's second-order change along −g is at most its first-order one, so
    the meta-gradient's Jacobian I − α_t H stretches g at most 2-fold (`step` when λ = 0 or g = 0)."""
    flat = [g.detach() for g in grads]
    squared = float(sum(g.double().pow(2).sum() for g in flat))
    if squared == 0:
        return step
    hessian_g = torch.autograd.grad(grads, tuple(params.values()), grad_outputs=flat, retain_graph=True, allow_unused=True)
    curvature = float(sum((h.double() * g.double()).sum() for h, g in zip(hessian_g, flat) if h is not None)) / squared
    return min(step, 1.0 / abs(curvature)) if curvature else step


def meta_tune(
    params: Params, tune_loss: Callable[[Params], torch.Tensor], inner_lr: float, *, first_order: bool = False,
    polyak: bool = False, curvature: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor], Params, float]:
    """L_tune(θ), its gradient, the temporary weights θ' = θ − α_t ∇_θ L_tune(θ), and α_t.

    α_t = α, at most min(α, L_tune / ‖∇L_tune‖²) with `polyak` and 1/|λ| with `curvature`
    (`curvature_step`), a number. With `first_order=False` θ' stays a differentiable function of
    θ through the gradient (second order); otherwise the gradient is detached.
    """
    loss, grads, step = _tune(params, tune_loss, inner_lr, graph=not first_order, polyak=polyak, curvature=curvature)
    fast = {name: p - step * g for (name, p), g in zip(params.items(), grads)}  # eq. 2
    return loss, grads, fast, step


def _tune(
    params: Params, tune_loss: Callable[[Params], torch.Tensor], inner_lr: float, *, graph: bool, polyak: bool, curvature: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], float]:
    """L_tune(θ), its gradient (with a graph if `graph`) and the meta-tune step α_t."""
    loss = tune_loss(params)  # eq. 1
    grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=graph or curvature)
    step = polyak_step(loss, grads, inner_lr) if polyak else inner_lr
    if curvature:
        step = curvature_step(params, grads, step)
    return loss, list(grads) if graph else [g.detach() for g in grads], step


def query_weights(sizes: Sequence[int], device: torch.device) -> torch.Tensor:
    """1 / |Q_j| for every sample of query set j: a weighted sum is then Σ_j mean over Q_j."""
    return torch.cat([torch.full((n,), 1.0 / n, device=device) for n in sizes])


def query_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_j CE(Q_j): each query set's mean cross-entropy, summed, as Σ_i w_i CE_i."""
    return (weights * F.cross_entropy(logits, labels, reduction="none")).sum()  # eq. 3, summed over j


def meta_test(
    forward: Forward, fast: Params, query_x: torch.Tensor, query_y: torch.Tensor, weights: torch.Tensor,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_test(θ') = Σ_j CE(f_θ'(Q_j)), all query sets in one batched forward, after the `context`
    inputs when given (in the forward, so in its batch statistics, but not in the loss)."""
    inputs = query_x if context is None else torch.cat([context, query_x])
    return query_loss(forward(fast, inputs)[len(inputs) - len(query_x):], query_y, weights)  # eq. 3


def membership_loss(log_odds: torch.Tensor, targets: torch.Tensor, total: int | None = None) -> torch.Tensor:
    """BCE between an MI model's P(member) = sigmoid(log_odds) and the audit targets (0 = forget, 1 = remain).

    Averaged over `total` samples (default: these), so parts of an audit set sum to its mean.
    Computed from the log-odds, so it neither saturates nor divides by p(1 − p) when the MI
    model is certain (BCE on probabilities gives NaN second derivatives there).
    """
    bce = F.binary_cross_entropy_with_logits(log_odds, targets.to(log_odds.dtype), reduction="sum")
    return bce / (total if total is not None else len(targets))  # eq. 11


def _meta_gradient(
    params: Params, tune_grads: Sequence[torch.Tensor], test_loss: torch.Tensor, beta: float, reduce: Reduce | None = None
) -> list[torch.Tensor]:
    """∇_θ [L_tune(θ) + β L_test(θ')] from ∇L_tune (already computed) and a backward of β L_test."""
    test_grads = torch.autograd.grad(beta * test_loss, tuple(params.values()), allow_unused=True)
    test_grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(test_grads, tune_grads)]
    if reduce is not None:
        reduce(test_grads)  # the parts of the meta-test loss, summed across ranks
    return [g_tune.detach() + g_test for g_tune, g_test in zip(tune_grads, test_grads)]  # eq. 4


def meta_feedback(
    params: Params,
    tune_loss: Callable[[Params], torch.Tensor],
    test_loss: Callable[[Params], torch.Tensor],
    *,
    inner_lr: float,
    beta: float,
    first_order: bool,
    meta_opt: bool,
    polyak: bool,
    reduce: Reduce | None,
    curvature: bool = False,
) -> Feedback:
    """∇_θ [L_tune(θ) + β L_test(θ')] with θ' from one inner step (meta-tune, meta-test);
    without meta-optimisation both losses are taken at θ and θ' is never built (its step size
    is still reported)."""
    if meta_opt:
        tune, tune_grads, fast, step = meta_tune(
            params, tune_loss, inner_lr, first_order=first_order, polyak=polyak, curvature=curvature
        )
        test = test_loss(fast)
    else:
        tune, tune_grads, step = _tune(params, tune_loss, inner_lr, graph=False, polyak=polyak, curvature=curvature)
        test = test_loss(params)
    return Feedback(_meta_gradient(params, tune_grads, test, beta, reduce), tune.detach(), test.detach(), step)


def remembering_feedback(
    forward: Forward,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    query_sizes: Sequence[int],
    *,
    inner_lr: float,
    beta: float = 1.0,
    first_order: bool = False,
    meta_opt: bool = True,
    polyak: bool = False,
    curvature: bool = False,
    test_part: torch.Tensor | None = None,
    reduce: Reduce | None = None,
    support_context: bool = False,
) -> Feedback:
    """g_r = ∇_θ [CE(f_θ(S_r)) + β Σ_j CE(f_θ'(Q_j))], θ' = θ − α_t ∇CE(f_θ(S_r)).

    `support_y` are the random labels ỹ of the support set (eq. 6); the query sets are
    concatenated in `query_x`/`query_y` with sizes `query_sizes` (eq. 7). Without
    meta-optimisation (`meta_opt=False`) the query loss is taken at θ (no θ'). `support_context`:
    the query forward also carries the support inputs (`meta_test`'s context), so that batch
    statistics normalise the query sets together with them. `polyak`, `curvature`, `test_part`,
    `reduce`: see the module docstring.
    """
    weights = query_weights(query_sizes, query_x.device)
    if test_part is not None:
        query_x, query_y, weights = query_x[test_part], query_y[test_part], weights[test_part]
    return meta_feedback(
        params,
        lambda p: F.cross_entropy(forward(p, support_x), support_y),  # eq. 1
        lambda p: meta_test(forward, p, query_x, query_y, weights, support_x if support_context else None),
        inner_lr=inner_lr, beta=beta, first_order=first_order, meta_opt=meta_opt, polyak=polyak, curvature=curvature, reduce=reduce,
    )


def forgetting_feedback(
    forward: Forward,
    params: Params,
    audit_x: torch.Tensor,
    audit_y: torch.Tensor,
    audit_targets: torch.Tensor,
    support_model: MembershipModel,
    query_model: MembershipModel,
    *,
    inner_lr: float,
    beta: float = 1.0,
    first_order: bool = False,
    meta_opt: bool = True,
    polyak: bool = False,
    curvature: bool = False,
    test_part: torch.Tensor | None = None,
    reduce: Reduce | None = None,
) -> Feedback:
    """g_f = ∇_θ [BCE(M_s(f_θ(A))) + β BCE(M_q(f_θ''(A)))], θ'' = θ − α_t ∇BCE(M_s(f_θ(A))).

    The audit set A holds inputs `audit_x`, their true labels `audit_y` (what the MI models
    read besides the logits) and targets `audit_targets` (0 for forget samples, 1 for remaining
    ones). `support_model` and `query_model` map (logits, labels) to membership log-odds.
    Without meta-optimisation both MI losses are taken at θ. `polyak`, `curvature`, `test_part`, `reduce`:
    see the module docstring.
    """
    total = len(audit_targets)
    test_x, test_y, test_targets = (
        (audit_x, audit_y, audit_targets) if test_part is None else (audit_x[test_part], audit_y[test_part], audit_targets[test_part])
    )

    return meta_feedback(
        params,
        lambda p: membership_loss(support_model(forward(p, audit_x), audit_y), audit_targets),  # eq. 11
        lambda p: membership_loss(query_model(forward(p, test_x), test_y), test_targets, total),  # eq. 3 with M_q
        inner_lr=inner_lr, beta=beta, first_order=first_order, meta_opt=meta_opt, polyak=polyak, curvature=curvature, reduce=reduce,
    )


class Clipped(NamedTuple):
    gradient: list[torch.Tensor]
    scaled: bool  # whether the bound acted


def clip_norm(gradient: Sequence[torch.Tensor], max_norm: float) -> Clipped:
    """`gradient` scaled down to a global L2 norm of at most `max_norm` (unchanged when 0)."""
    if max_norm <= 0:
        return Clipped(list(gradient), False)
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradient])))
    if norm <= max_norm:
        return Clipped(list(gradient), False)
    return Clipped([g * (max_norm / norm) for g in gradient], True)


def meta_update(optimizer: torch.optim.Optimizer, params: Params, gradient: Sequence[torch.Tensor]) -> None:
    """θ ← optimizer step along `gradient` (eq. 5 with the outer optimizer)."""
    for p, g in zip(params.values(), gradient):
        p.grad = g
    optimizer.step()  # eq. 5
