"""LTU's meta-optimisation scheme, one function per phase, on parameter dictionaries.

The model is evaluated functionally, `torch.func.functional_call(model, (params, buffers), x)`,
so the temporary weights θ' and θ'' are plain dictionaries of tensors built by one dict
comprehension: no model copy per step. With `first_order=False` the inner gradient keeps its
graph (`create_graph=True`) and the meta-gradient holds the second-order term, as in MAML;
with `first_order=True` the inner gradient is detached (first-order MAML).

Equation numbers refer to the paper (arXiv 2407.10494).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]
Forward = Callable[[Params, torch.Tensor], torch.Tensor]
MembershipModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> log-odds of membership


class Feedback(NamedTuple):
    """One feedback gradient (a tensor per parameter, no graph) and its detached losses."""

    gradient: list[torch.Tensor]
    tune_loss: torch.Tensor  # L_tune(θ), eq. 1 / 11
    test_loss: torch.Tensor  # L_test(θ') (at θ without meta-optimisation), eq. 3


def functional_forward(model: nn.Module, buffers: Params) -> Forward:
    """`forward(params, x)`: the logits of `model` with parameters `params` and fixed `buffers`."""

    def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (params, buffers), (x,))

    return forward


def meta_tune(
    params: Params, tune_loss: Callable[[Params], torch.Tensor], inner_lr: float, *, first_order: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], Params]:
    """L_tune(θ), its gradient, and the temporary weights θ' = θ − α ∇_θ L_tune(θ).

    With `first_order=False` θ' stays a differentiable function of θ through the gradient
    (second order); otherwise the gradient is detached.
    """
    loss = tune_loss(params)  # eq. 1
    grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=not first_order)
    fast = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}  # eq. 2
    return loss, list(grads), fast


def query_loss(logits: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Σ_j CE(Q_j): the mean cross-entropy of each query set (consecutive `sizes`), summed."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    return sum(part.mean() for part in per_sample.split(list(sizes)))  # eq. 3, summed over j


def meta_test(
    forward: Forward, fast: Params, query_x: torch.Tensor, query_y: torch.Tensor, sizes: Sequence[int]
) -> torch.Tensor:
    """L_test(θ') = Σ_j CE(f_θ'(Q_j)), all query sets in one batched forward."""
    return query_loss(forward(fast, query_x), query_y, sizes)  # eq. 3


def membership_loss(log_odds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE between an MI model's P(member) = sigmoid(log_odds) and the audit targets (0 = forget, 1 = remain).

    Computed from the log-odds, so it neither saturates nor divides by p(1 − p) when the MI
    model is certain (BCE on probabilities gives NaN second derivatives there).
    """
    return F.binary_cross_entropy_with_logits(log_odds, targets.to(log_odds.dtype))  # eq. 11


def _meta_gradient(
    params: Params, tune_grads: Sequence[torch.Tensor], test_loss: torch.Tensor, beta: float
) -> list[torch.Tensor]:
    """∇_θ [L_tune(θ) + β L_test(θ')] from ∇L_tune (already computed) and a backward of β L_test."""
    test_grads = torch.autograd.grad(beta * test_loss, tuple(params.values()), allow_unused=True)
    return [
        g_tune.detach() + (g_test if g_test is not None else torch.zeros_like(g_tune))
        for g_tune, g_test in zip(tune_grads, test_grads)
    ]  # eq. 4


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
) -> Feedback:
    """g_r = ∇_θ [CE(f_θ(S_r)) + β Σ_j CE(f_θ'(Q_j))], θ' = θ − α ∇CE(f_θ(S_r)).

    `support_y` are the random labels ỹ of the support set (eq. 6); the query sets are
    concatenated in `query_x`/`query_y` with sizes `query_sizes` (eq. 7). Without
    meta-optimisation (`meta_opt=False`) the query loss is taken at θ (no θ'), from one
    forward over support and queries together.
    """
    if not meta_opt:
        logits = forward(params, torch.cat([support_x, query_x]))
        n = len(support_x)
        tune = F.cross_entropy(logits[:n], support_y)  # eq. 1
        test = query_loss(logits[n:], query_y, query_sizes)
        grads = torch.autograd.grad(tune + beta * test, tuple(params.values()))
        return Feedback(list(grads), tune.detach(), test.detach())

    def tune_loss(p: Params) -> torch.Tensor:
        return F.cross_entropy(forward(p, support_x), support_y)

    tune, tune_grads, fast = meta_tune(params, tune_loss, inner_lr, first_order=first_order)
    test = meta_test(forward, fast, query_x, query_y, query_sizes)
    return Feedback(_meta_gradient(params, tune_grads, test, beta), tune.detach(), test.detach())


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
) -> Feedback:
    """g_f = ∇_θ [BCE(M_s(f_θ(A))) + β BCE(M_q(f_θ''(A)))], θ'' = θ − α ∇BCE(M_s(f_θ(A))).

    The audit set A holds inputs `audit_x`, their true labels `audit_y` (what the MI models
    read besides the logits) and targets `audit_targets` (0 for forget samples, 1 for remaining
    ones). `support_model` and `query_model` map (logits, labels) to membership log-odds.
    Without meta-optimisation both MI losses are taken at θ from one forward.
    """
    if not meta_opt:
        logits = forward(params, audit_x)
        tune = membership_loss(support_model(logits, audit_y), audit_targets)  # eq. 11
        test = membership_loss(query_model(logits, audit_y), audit_targets)
        grads = torch.autograd.grad(tune + beta * test, tuple(params.values()))
        return Feedback(list(grads), tune.detach(), test.detach())

    def tune_loss(p: Params) -> torch.Tensor:
        return membership_loss(support_model(forward(p, audit_x), audit_y), audit_targets)  # eq. 11

    tune, tune_grads, fast = meta_tune(params, tune_loss, inner_lr, first_order=first_order)
    test = membership_loss(query_model(forward(fast, audit_x), audit_y), audit_targets)  # eq. 3 with M_q
    return Feedback(_meta_gradient(params, tune_grads, test, beta), tune.detach(), test.detach())


def clip_norm(gradient: Sequence[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """`gradient` scaled down to a global L2 norm of at most `max_norm` (unchanged when 0)."""
    if max_norm <= 0:
        return list(gradient)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gradient]))
    scale = (max_norm / (norm + 1e-12)).clamp(max=1.0)
    return [g * scale for g in gradient]


def meta_update(optimizer: torch.optim.Optimizer, params: Params, gradient: Sequence[torch.Tensor]) -> None:
    """θ ← optimizer step along `gradient` (eq. 5 with the outer optimizer)."""
    for p, g in zip(params.values(), gradient):
        p.grad = g
    optimizer.step()  # eq. 5
