"""ℓ1-sparse is fine-tuning under an ℓ1 penalty whose weight follows Unlearn-Sparse's linear schedule."""

from __future__ import annotations

import pytest
import torch

import unlearnkit as uk
from unlearnkit.testing import state_equal, trained_tiny_model
from unlearnkit_baselines import sparse
from unlearnkit_baselines.sparse import l1_norm, l1_weight


def test_the_penalty_weight_decays_linearly_from_alpha_towards_zero_over_the_epochs():
    assert [l1_weight(1.0, e, 10) for e in range(10)] == pytest.approx([1.0 - e / 10 for e in range(10)])
    assert [l1_weight(2.0, e, 6, no_l1_epochs=2) for e in range(6)] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0, 0.0])
    assert [l1_weight(0.5, e, 3, no_l1_epochs=3) for e in range(3)] == [0.5, 0.5, 0.5]  # the reference's edge case


def test_each_epoch_trains_under_its_scheduled_weight(monkeypatch):
    model, task = trained_tiny_model()
    used = []
    original_norm, original_weight = sparse.l1_norm, sparse.l1_weight
    weights = []

    def weight_spy(*args, **kwargs):
        weights.append(original_weight(*args, **kwargs))
        return weights[-1]

    def norm_spy(m):
        used.append(weights[-1])
        return original_norm(m)

    monkeypatch.setattr(sparse, "l1_weight", weight_spy)
    monkeypatch.setattr(sparse, "l1_norm", norm_spy)
    uk.get_unlearner("l1-sparse", alpha=0.01, epochs=4, no_l1_epochs=1, batch_size=32).unlearn(model, task)
    steps = -(-len(task.retain) // 32)
    assert weights == pytest.approx([0.01, 0.01 * 2 / 3, 0.01 / 3, 0.0])
    assert used == pytest.approx([w for w in weights for _ in range(steps)])  # the penalty enters every step


def test_the_penalty_drives_weights_toward_zero():
    model, task = trained_tiny_model()
    norms = [l1_norm(uk.get_unlearner("l1-sparse", alpha=a, epochs=5).unlearn(model, task)).item() for a in (0.0, 0.01, 0.05)]
    assert norms[0] > norms[1] > norms[2]
    assert norms[2] < 0.9 * l1_norm(model).item()


def test_with_alpha_zero_l1_sparse_is_fine_tuning():
    model, task = trained_tiny_model()
    shared = dict(epochs=3, lr=0.02, batch_size=16, momentum=0.9, weight_decay=5e-4)
    sparse_ft = uk.get_unlearner("l1-sparse", alpha=0.0, **shared).unlearn(model, task, seed=1)
    assert state_equal(sparse_ft, uk.get_unlearner("ft", **shared).unlearn(model, task, seed=1))


def test_l1_norm_sums_absolute_values_of_every_parameter():
    model, _ = trained_tiny_model()
    expected = torch.cat([p.detach().flatten() for p in model.parameters()]).abs().sum()
    torch.testing.assert_close(l1_norm(model).detach(), expected)
