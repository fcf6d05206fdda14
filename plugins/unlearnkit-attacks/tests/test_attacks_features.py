"""The membership signals, checked against hand-computed values and float64 references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit_attacks import features as feat

P = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]], dtype=torch.float64)
LOGITS = P.log()  # softmax(LOGITS) == P
LABELS = torch.tensor([0, 1])


def test_confidence_is_the_softmax_probability_of_the_true_label() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(20, 10, generator=g) * 4, torch.randint(10, (20,), generator=g)
    expected = torch.softmax(logits, -1)[torch.arange(20), labels]
    torch.testing.assert_close(feat.confidence(logits, labels), expected)
    torch.testing.assert_close(feat.confidence(LOGITS, LABELS), torch.tensor([0.7, 0.2], dtype=torch.float64))


def test_entropy_and_loss_by_hand() -> None:
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    torch.testing.assert_close(feat.entropy(LOGITS), torch.tensor([h, h], dtype=torch.float64))
    torch.testing.assert_close(feat.cross_entropy_loss(LOGITS, LABELS), torch.tensor([-math.log(0.7), -math.log(0.2)], dtype=torch.float64))


def test_modified_entropy_by_hand_row_by_row() -> None:
    # Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i); row 0 has label 0, row 1 label 1.
    row0 = -(0.3 * math.log(0.7) + 0.2 * math.log(0.8) + 0.1 * math.log(0.9))
    row1 = -(0.8 * math.log(0.2) + 0.7 * math.log(0.3) + 0.1 * math.log(0.9))
    assert row0 == pytest.approx(0.1621673, abs=1e-6) and row1 == pytest.approx(2.1408674, abs=1e-6)
    torch.testing.assert_close(feat.modified_entropy(LOGITS, LABELS), torch.tensor([row0, row1], dtype=torch.float64))


def test_modified_entropy_is_zero_when_confident_and_right_and_large_when_confident_and_wrong() -> None:
    logits = torch.tensor([[30.0, 0.0, 0.0], [30.0, 0.0, 0.0]])
    m = feat.modified_entropy(logits, torch.tensor([0, 1]))
    assert m[0] < 1e-10
    # −(1 − p_1) log p_1 ≈ 30 and −p_0 log(1 − p_0) ≈ 30 − log 2: ≈ 59.3, finite in float32.
    assert m[1] == pytest.approx(60 - math.log(2), rel=1e-4)


def test_log1m_probs_matches_float64_reference_and_stays_exact_where_p_rounds_to_one() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 10, generator=g, dtype=torch.float64) * 5
    reference = torch.log1p(-torch.softmax(logits, -1))
    torch.testing.assert_close(feat.log1m_probs(logits), reference)
    torch.testing.assert_close(feat.log1m_probs(logits.float()), reference.float(), atol=1e-5, rtol=1e-5)
    # float32 softmax of [30, 0] rounds p_0 to 1; log(1 − p_0) = −30 − log(1 + e^−30) still comes out.
    out = feat.log1m_probs(torch.tensor([[30.0, 0.0]]))
    assert out[0, 0].item() == pytest.approx(-30.0, abs=1e-5)
    assert out[0, 1].item() == pytest.approx(-math.exp(-30), rel=1e-3)


def test_logit_margin_correctness_and_shapes() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, 1.0], [2.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2, 1])
    torch.testing.assert_close(feat.logit_margin(logits, labels), torch.tensor([0.5, -3.0, 0.0]))
    torch.testing.assert_close(feat.correctness(logits, labels), torch.tensor([1.0, 0.0, 0.0]))
    s = feat.sorted_probs(logits)
    assert s.shape == (3, 3) and (s[:, :-1] >= s[:, 1:]).all()
    torch.testing.assert_close(s.sum(-1), torch.ones(3))
    pl = feat.probs_with_label(logits, labels)
    assert pl.shape == (3, 6)
    torch.testing.assert_close(pl[:, 3:], torch.eye(3)[labels])


def test_half_precision_logits_are_promoted() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float16)
    assert feat.entropy(logits).dtype == torch.float32
    assert feat.modified_entropy(logits, torch.tensor([0])).dtype == torch.float32


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(scale=st.sampled_from([0.0, 1e-4, 1.0, 10.0, 50.0, 200.0, 1000.0]), seed=st.integers(0, 1000))
def test_every_signal_and_its_gradient_is_finite_at_any_logit_scale(scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(6, 10, generator=g) * scale).requires_grad_()
    labels = torch.randint(10, (6,), generator=g)
    signals = [
        feat.confidence(logits, labels), feat.entropy(logits), feat.modified_entropy(logits, labels),
        feat.cross_entropy_loss(logits, labels), feat.logit_margin(logits, labels), feat.log1m_probs(logits),
        feat.sorted_probs(logits), feat.probs_with_label(logits, labels),
    ]
    for s in signals:
        assert torch.isfinite(s).all()
        (grad,) = torch.autograd.grad(s.sum(), logits)
        assert torch.isfinite(grad).all()
