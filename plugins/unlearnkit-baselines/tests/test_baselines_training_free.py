"""Fisher forgetting and SSD perturb the weights exactly as their references say."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit.testing import trained_tiny_model
from unlearnkit_baselines.fisher import EPSILON, fisher_diagonal, noise_std
from unlearnkit_baselines.ssd import dampening_factor

CPU = torch.device("cpu")

# -- fisher -----------------------------------------------------------------------------------


def test_fisher_diagonal_matches_a_per_sample_loop():
    model, task = trained_tiny_model()
    data = task.retain.subset(torch.arange(23))
    fisher = fisher_diagonal(model, data, batch_size=5, device=CPU)
    ref = copy.deepcopy(model).eval()
    expected = [torch.zeros_like(p) for p in ref.parameters()]
    for x, y in zip(data.x, data.y):
        ref.zero_grad()
        torch.log_softmax(ref(x[None]), dim=1)[0, y].backward()
        expected = [e + (p.grad + EPSILON) ** 2 for e, p in zip(expected, ref.parameters())]
    for (name, _), e in zip(ref.named_parameters(), expected):
        torch.testing.assert_close(fisher[name], e / len(data), rtol=1e-4, atol=1e-12)


def test_noise_std_is_sqrt_alpha_over_fisher_clamped():
    fisher = torch.tensor([1e-6, 1e-2, 1.0, 4.0, 1e6])
    torch.testing.assert_close(noise_std(fisher, 0.5, 100.0), torch.sqrt(0.5 / fisher).clamp(max=100.0))
    assert noise_std(fisher, 0.5, 0.1).max() == 0.1
    assert noise_std(torch.tensor([1e4]), 1.0, 0.1).item() == pytest.approx(0.01)


def _standardised_noise(alpha: float, max_std: float, head_scale: float, seeds: range) -> dict[str, torch.Tensor]:
    """(w_new − w_old) / sqrt(min(α/F, max_std²)) per parameter, pooled over runs with different seeds."""
    model, task = trained_tiny_model()
    fisher = fisher_diagonal(model, task.retain, batch_size=64, device=CPU)
    unlearner = uk.get_unlearner("fisher", alpha=alpha, max_std=max_std, head_scale=head_scale)
    draws: dict[str, list[torch.Tensor]] = {name: [] for name in fisher}
    for seed in seeds:
        new = dict(unlearner.unlearn(model, task, seed=seed).named_parameters())
        for name, p in model.named_parameters():
            draws[name].append((new[name] - p).detach() / noise_std(fisher[name], alpha, max_std))
    return {name: torch.stack(d) for name, d in draws.items()}


def test_fisher_noise_variance_is_alpha_over_fisher():
    # max_std large enough that sqrt(α/F) is never clamped: the variance must be α/F weight by weight.
    noise = _standardised_noise(alpha=1e-8, max_std=1e6, head_scale=1.0, seeds=range(8))
    pooled = torch.cat([n.flatten() for n in noise.values()])
    assert pooled.numel() > 10_000
    assert abs(pooled.mean().item()) < 0.03
    assert abs(pooled.var().item() - 1.0) < 0.05
    per_weight = torch.cat([n.var(0).flatten() for n in noise.values()])  # 8 draws per weight
    assert abs(per_weight.mean().item() - 1.0) < 0.05


def test_fisher_default_clamp_and_head_scaling():
    model, task = trained_tiny_model()
    cfg = uk.get_unlearner("fisher").config
    assert (cfg.alpha, cfg.max_std, cfg.head_scale) == (0.2, 1e-3, 10.0)
    noise = _standardised_noise(alpha=cfg.alpha, max_std=cfg.max_std, head_scale=cfg.head_scale, seeds=range(40))
    head = [name for name, p in model.named_parameters() if p.shape[-1] == task.num_classes]
    assert head == ["5.bias"]
    for name, n in noise.items():
        expected = cfg.head_scale if name in head else 1.0
        assert n.std().item() == pytest.approx(expected, rel=0.15), name


# -- ssd --------------------------------------------------------------------------------------


def _reference_importance(model, data, batch_size):
    model = copy.deepcopy(model).eval()
    total = [torch.zeros_like(p) for p in model.parameters()]
    batches = 0
    for start in range(0, len(data), batch_size):
        model.zero_grad()
        F.cross_entropy(model(data.x[start : start + batch_size]), data.y[start : start + batch_size]).backward()
        total = [t + p.grad**2 for t, p in zip(total, model.parameters())]
        batches += 1
    return {name: t / batches for (name, _), t in zip(model.named_parameters(), total)}


@pytest.mark.parametrize(("alpha", "lam"), [(10.0, 1.0), (2.0, 0.5)])
def test_ssd_dampens_exactly_the_selected_weights(alpha, lam):
    model, task = trained_tiny_model()
    new = uk.get_unlearner("ssd", selection_weighting=alpha, dampening_constant=lam, batch_size=16).unlearn(model, task)
    i_train = _reference_importance(model, task.train, 16)
    i_forget = _reference_importance(model, task.forget, 16)
    old, after = dict(model.named_parameters()), dict(new.named_parameters())
    n_selected = 0
    for name in old:
        w, w_new = old[name].detach(), after[name].detach()
        selected = i_forget[name] > alpha * i_train[name]
        n_selected += int(selected.sum())
        assert torch.equal(w_new[~selected], w[~selected]), f"{name}: unselected weights changed"
        beta = (lam * i_train[name] / i_forget[name]).clamp(max=1.0)
        torch.testing.assert_close(w_new[selected], w[selected] * beta[selected], rtol=1e-4, atol=1e-7)
        assert (w_new.abs() <= w.abs()).all(), f"{name}: a weight grew"
        assert ((torch.sign(w_new) == torch.sign(w)) | (w_new == 0)).all(), f"{name}: a weight changed sign"
    total = sum(p.numel() for p in model.parameters())
    assert 0 < n_selected < total


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.floats(0.0, 1e3), min_size=1, max_size=20), st.integers(0, 2**31 - 1),
    st.floats(0.1, 50.0), st.floats(0.01, 5.0), st.sampled_from([1.0, 2.0]),
)
def test_dampening_factor_shrinks_only_where_selected(train, seed, alpha, lam, exponent):
    i_train = torch.tensor(train)
    i_forget = torch.rand(len(train), generator=torch.Generator().manual_seed(seed)) * 1e3
    beta = dampening_factor(i_train, i_forget, alpha=alpha, lam=lam, exponent=exponent)
    selected = i_forget > alpha * i_train
    assert torch.isfinite(beta).all()
    assert ((0 <= beta) & (beta <= 1)).all()
    assert (beta[~selected] == 1).all()
    expected = (lam * i_train / i_forget).pow(exponent).clamp(max=1.0)
    torch.testing.assert_close(beta[selected], expected[selected])
