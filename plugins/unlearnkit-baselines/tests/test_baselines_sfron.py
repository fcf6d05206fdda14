"""SFR-on's mask, adaptive loss, masked forget step and schedule are the reference's (K1nght/Unified-Unlearning-w-Remain-Geometry)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.testing import trained_tiny_model
from unlearnkit_baselines import sfron
from unlearnkit_baselines._common import sgd
from unlearnkit_baselines.sfron import adaptive_forget_loss, cosine, fisher_diagonal, forget_step, remain_balanced_mask

CPU = torch.device("cpu")


def _batch_fisher(model, data, batch_size):
    model = copy.deepcopy(model).eval()
    batches = list(uk.batches(data, batch_size))
    total = [torch.zeros_like(p) for p in model.parameters()]
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        total = [t + p.grad.square() / len(batches) for t, p in zip(total, model.parameters())]
    return total


def test_fisher_is_the_mean_squared_batch_gradient():
    model, task = trained_tiny_model()
    fisher = fisher_diagonal(model, task.forget, batch_size=8, device=CPU)
    for got, expected in zip(fisher.values(), _batch_fisher(model, task.forget, 8)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("threshold", [0.5, 1.0, 4.0])
def test_the_mask_keeps_weights_whose_forget_fisher_outweighs_the_retain_fisher(threshold):
    model, task = trained_tiny_model()
    mask = remain_balanced_mask(model, task.forget, task.retain, threshold, batch_size=16, device=CPU)
    assert list(mask) == [n for n, _ in model.named_parameters()]
    forget, retain = _batch_fisher(model, task.forget, 16), _batch_fisher(model, task.retain, 16)
    for m, f, r in zip(mask.values(), forget, retain):
        assert torch.equal(m, (f + 1e-15) / (r + 1e-15) >= threshold)
    density = torch.cat([m.flatten() for m in mask.values()]).float().mean()
    assert 0.0 < density < 1.0
    everything = remain_balanced_mask(model, task.forget, task.retain, 0.0, batch_size=16, device=CPU)
    assert all(m.all() for m in everything.values())


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 16), st.floats(0.0, 2.0), st.integers(0, 2**31 - 1))
def test_the_adaptive_loss_weighs_each_sample_by_its_loss_to_the_minus_lambda(n, lambd, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, 5, generator=g)).requires_grad_(True)
    y = torch.randint(0, 5, (n,), generator=g)
    losses = F.cross_entropy(logits, y, reduction="none")
    coef = 1.0 / losses.detach().clamp_min(torch.finfo(torch.float32).eps) ** lambd
    loss = adaptive_forget_loss(logits, y, lambd)
    torch.testing.assert_close(loss, (coef * losses).sum() / coef.sum())
    (grad,) = torch.autograd.grad(loss, logits)
    per_sample = torch.stack([torch.autograd.grad(losses[i], logits, retain_graph=True)[0] for i in range(n)])
    torch.testing.assert_close(grad, (coef[:, None, None] * per_sample).sum(0) / coef.sum())  # no gradient through the weights
    if lambd == 0.0:
        torch.testing.assert_close(loss, losses.mean())


def test_a_sample_whose_loss_rounds_to_zero_does_not_silence_the_batch():
    logits = torch.tensor([[200.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.5, 1.5, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 0])
    assert F.cross_entropy(logits, y, reduction="none")[0].item() == 0.0  # float32 underflow
    (with_zero,) = torch.autograd.grad(adaptive_forget_loss(logits, y, 0.5), logits)
    (without,) = torch.autograd.grad(adaptive_forget_loss(logits[1:], y[1:], 0.5), logits)
    coef = 1.0 / F.cross_entropy(logits[1:], y[1:], reduction="none").detach().sqrt()
    zero_weight = 1.0 / math.sqrt(torch.finfo(torch.float32).eps)  # the reference's would be 1e15
    torch.testing.assert_close(with_zero[1:], without[1:] * coef.sum() / (coef.sum() + zero_weight))
    assert with_zero[1:].norm() > 1e-4


def test_a_masked_forget_step_changes_only_weights_inside_its_mask():
    model, task = trained_tiny_model()
    optimizer = sgd(model, 0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    F.cross_entropy(model(task.retain.x[:16]), task.retain.y[:16]).backward()
    optimizer.step()  # a retain step: every weight now has momentum, which would carry it on
    g = torch.Generator().manual_seed(0)
    mask = {name: torch.rand(p.shape, generator=g) < 0.4 for name, p in model.named_parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: optimizer.state[p]["momentum_buffer"].clone() for name, p in model.named_parameters()}
    forget_step(model, task.forget.x[:16], task.forget.y[:16], optimizer, mask, alpha=25.0, lambd=0.5, max_norm=7.0, step=1)
    for name, p in model.named_parameters():
        m = mask[name]
        assert torch.equal(p[~m], before[name][~m]), name
        assert torch.equal(optimizer.state[p]["momentum_buffer"][~m], buffers[name][~m]), name
    moved = torch.cat([(p != before[n])[mask[n]] for n, p in model.named_parameters()])
    assert moved.float().mean() > 0.9


def test_a_first_forget_step_leaves_no_momentum_outside_its_mask():
    model, task = trained_tiny_model()
    optimizer = sgd(model, 0.05, momentum=0.9, weight_decay=5e-4)
    mask = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in model.named_parameters()}
    forget_step(model.train(), task.forget.x, task.forget.y, optimizer, mask, alpha=1.0, lambd=0.5, max_norm=7.0, step=0)
    assert all(not optimizer.state[p]["momentum_buffer"].any() for p in model.parameters())


def test_the_forget_step_clips_the_masked_gradient():
    model, task = trained_tiny_model()
    mask = {name: torch.ones_like(p, dtype=torch.bool) for name, p in model.named_parameters()}
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = sgd(model, 1.0, momentum=0.0, weight_decay=0.0)
    forget_step(model.train(), task.forget.x, task.forget.y, optimizer, mask, alpha=1e6, lambd=0.5, max_norm=0.5, step=0)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
    assert moved.item() == pytest.approx(0.5, rel=1e-4)


def test_forget_steps_come_every_forget_every_iterations_with_a_cosine_weight(monkeypatch):
    calls = []
    original = sfron.forget_step

    def spy(model, x, y, optimizer, mask, **kwargs):
        calls.append((kwargs["alpha"], kwargs["step"], optimizer.param_groups[0]["lr"]))
        return original(model, x, y, optimizer, mask, **kwargs)

    monkeypatch.setattr(sfron, "forget_step", spy)
    model, task = trained_tiny_model()
    uk.get_unlearner("sfron", iterations=12, forget_every=5, forget_alpha=8.0, lr=0.01, batch_size=16).unlearn(model, task)
    assert [alpha for alpha, _, _ in calls] == pytest.approx([cosine(8.0, t, 12) for t in (0, 5, 10)])
    assert [step for _, step, _ in calls] == [0, 6, 12]  # each iteration also takes a retain step
    assert [lr for _, _, lr in calls] == pytest.approx([0.01 * (1 + math.cos(math.pi * t / 12)) / 2 for t in (0, 5, 10)])


def test_the_progress_line_counts_iterations(capsys):
    """SFR-on's length is iterations: a log line `sfron: 660/660 epochs` named the wrong unit."""
    model, task = trained_tiny_model()
    uk.get_unlearner("sfron", iterations=10).unlearn(model, task, seed=0, progress=True)
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sfron: ")]
    assert line.startswith("sfron: 10/10 iterations in ")
