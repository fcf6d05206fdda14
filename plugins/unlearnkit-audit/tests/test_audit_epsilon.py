"""The forgetting score: hand-computed cases, the reference's numbers, both ends of the scale."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unlearnkit_audit import bucket_points, example_epsilons, final_score, forget_quality, logit_scaled_confidence
from unlearnkit_audit._reference import reference_forget_score
from unlearnkit_audit.epsilon import DELTA, EPSILON_CAP, _count_at_or_below, epsilon_table

# -- logit-scaled confidence ------------------------------------------------------------------


def _reference_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """compute_logit_scaled_confidence's formula, on float64 logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    correct = p[rows, labels].copy()
    p[rows, labels] = 0
    return np.log(correct + 1e-45) - np.log(p.sum(axis=1) + 1e-45)


def test_confidence_is_the_log_odds_of_the_true_class():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 3.0, 1.0]])
    labels = np.array([0, 2, 1])
    p_true = np.array([math.exp(2) / (math.exp(2) + 2), 1 / 3, math.exp(3) / (math.exp(-1) + math.exp(3) + math.exp(1))])
    np.testing.assert_allclose(logit_scaled_confidence(logits, labels), np.log(p_true / (1 - p_true)), rtol=1e-12)


def test_confidence_matches_the_reference_formula_and_saturates_like_it():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 8, (500, 10))
    logits[0] = [400.0] + [0.0] * 9  # p_wrong underflows: both give log(1) − log(1e-45)
    labels = rng.integers(10, size=500)
    labels[0] = 0
    ours = logit_scaled_confidence(logits, labels)
    np.testing.assert_allclose(ours, _reference_confidence(logits, labels), rtol=1e-9, atol=1e-9)
    assert ours[0] == pytest.approx(-math.log(1e-45))


def test_confidence_takes_tensors_and_a_models_axis_without_touching_them():
    logits = torch.randn(3, 5, 4)
    before = logits.clone()
    labels = torch.tensor([0, 1, 2, 3, 0])
    out = logit_scaled_confidence(logits, labels)
    assert out.shape == (3, 5) and torch.equal(logits, before)
    np.testing.assert_allclose(out[1], logit_scaled_confidence(logits[1].numpy(), labels.numpy()))


@pytest.mark.parametrize(("logits", "labels", "message"), [
    (np.zeros((3, 4)), np.array([0, 1]), "do not match"),
    (np.zeros((3, 4)), np.array([0, 1, 4]), "label 4 is out of range for 4 classes"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "labels must be integers"),
    (np.array([[0.0, np.nan], [0.0, 1.0]]), np.array([0, 1]), "NaN"),
    (np.zeros(4), np.array([0]), "at least 2 classes"),
])
def test_confidence_rejects_bad_input(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        logit_scaled_confidence(logits, labels)


# -- ε: hand-computed -------------------------------------------------------------------------


def test_the_table_of_epsilon_by_counts():
    table = epsilon_table(4)
    assert table[3, 1] == pytest.approx(math.log((1 - DELTA - 0.25) / 0.25), abs=1e-6)  # α = β = ¼
    assert table[2, 1] == pytest.approx(math.log((1 - DELTA - 0.5) / 0.25), abs=1e-6)
    assert table[2, 2] == 0.0  # a rule no better than chance
    assert table[4, 0] == np.inf  # perfect separation
    assert np.isnan(table[4, 1]) and np.isnan(table[0, 0]) and np.isnan(table[3, 0])  # one error rate 0: discarded


def test_a_hand_computed_example():
    # Unlearned at 0, 1, 2, 3 and retrained at 0.5, 1.5, 2.5, 3.5: the samples interleave, so
    # no rule keeps both error rates at ¼; the best keep two of one sample and one of the
    # other (α = ¼, β = ½): ε = ln((1 − δ − ½) / ¼), bucket [½, 1) of ⌈ln 3⌉ = 2: ½ point.
    unlearned = np.array([[0.0], [1.0], [2.0], [3.0]])
    retrained = unlearned + 0.5
    (eps,) = example_epsilons(unlearned, retrained)
    assert eps == pytest.approx(math.log((1 - DELTA - 0.5) / 0.25), abs=1e-6)
    assert forget_quality(unlearned, retrained) == 0.5


def test_bucket_points():
    eps = np.array([0.0, 0.49, 0.5, 1.2, 4.49, 4.5, 50.0])
    np.testing.assert_array_equal(bucket_points(eps, 64), [1, 1, 0.5, 0.25, 2**-8, 2**-9, 0])  # ⌈ln 63⌉ = 5: 10 buckets
    np.testing.assert_array_equal(bucket_points(eps, 2), np.zeros(7))  # ⌈ln 1⌉ = 0: nothing to earn


def test_final_score_scales_f_by_the_accuracy_ratios():
    assert final_score(0.5, {"RA": 90.0, "TA": 80.0}, {"RA": 100.0, "TA": 100.0}) == pytest.approx(0.5 * 0.9 * 0.8)
    with pytest.raises(ValueError, match="lacks TA"):
        final_score(0.5, {"RA": 90.0}, {"RA": 100.0, "TA": 100.0})


# -- both ends of the scale -------------------------------------------------------------------


def test_identical_confidences_score_the_top_bucket():
    confs = np.random.default_rng(0).normal(3, 1, (16, 40))
    assert np.all(example_epsilons(confs, confs.copy()) == 0) and forget_quality(confs, confs.copy()) == 1.0


def test_samples_separated_by_more_than_the_grid_score_zero():
    rng = np.random.default_rng(1)
    unlearned, retrained = rng.normal(0, 1, (16, 30)), rng.normal(0, 1, (16, 30))
    retrained += unlearned.max(0) - retrained.min(0) + 0.05  # every retrained model above every unlearned one
    assert np.all(example_epsilons(unlearned, retrained) == EPSILON_CAP) and forget_quality(unlearned, retrained) == 0.0


def test_samples_closer_than_the_grid_cannot_be_told_apart_perfectly():
    # Unlearned confidences fill [-0.5, 0.5]; retrained ones lie outside it on both sides, the
    # nearest 1e-7 away. An interval separates them, but the rules' grids (0.01 apart) cannot
    # end one in those gaps, so the best valid rule errs once on each side:
    # ε = ln((1 − δ − 1/N) · N) ≈ ln(N − 1), the largest finite ε N models can show.
    rng = np.random.default_rng(2)
    unlearned = rng.uniform(-0.5, 0.5, (16, 20))
    unlearned[:2] = [[-0.5], [0.5]]
    retrained = rng.uniform(0.5, 5.0, (16, 20)) * rng.choice([-1, 1], (16, 20))
    retrained[:2] = [[-0.5 - 1e-7], [0.5 + 1e-7]]
    eps = example_epsilons(unlearned, retrained)
    assert np.allclose(eps, math.log((1 - DELTA - 1 / 16) * 16), atol=1e-5)
    assert forget_quality(unlearned, retrained) == 2.0**-5  # bucket [2.5, 3) of 6


def test_a_point_mass_scores_the_cap():
    rng = np.random.default_rng(3)
    unlearned = np.tile(rng.normal(0, 1, (1, 10)), (8, 1))  # a deterministic method: every run alike
    assert np.all(example_epsilons(unlearned, rng.normal(0, 1, (8, 10))) == EPSILON_CAP)


def test_models_that_agree_on_a_constant_score_zero():
    # Every rule accepts both samples whole or neither: none is valid. The reference fails its
    # assertion here; nothing tells the samples apart, so ε = 0.
    assert example_epsilons(np.full((6, 3), 2.5), np.full((6, 3), 2.5)).tolist() == [0.0, 0.0, 0.0]


def test_retrain_against_retrain_is_the_metrics_floor_not_its_top():
    # Two samples from one distribution: the maximum over the ~160 000 rules finds ε ≈ 1–2 on
    # most examples (an interval holding most of one sample's extremes), so F ≈ 0.18: far below
    # 1, yet well above a method whose confidences sit 1.5 σ off. A perfect unlearner scores this.
    rng = np.random.default_rng(4)
    same = [rng.normal(0, 1, (32, 120)) for _ in range(2)]
    shifted = rng.normal(1.5, 1, (32, 120))
    eps = example_epsilons(*same)
    assert np.median(eps) < 2.0 and eps.max() < math.log(31)
    floor = forget_quality(*same)
    assert 0.1 < floor < 0.3
    assert forget_quality(shifted, same[1]) < floor / 4


# -- agreement with the reference -------------------------------------------------------------


def test_exactly_the_references_numbers_on_model_like_confidences():
    rng = np.random.default_rng(5)
    unlearned = rng.normal(2, 1, (24, 4))
    retrained = rng.normal(2.4, 1.3, (24, 4))
    unlearned[:, 0] = np.round(unlearned[:, 0], 2)  # on the grid's 0.01 spacing
    retrained[:, 1] = retrained[:, 1] * 0.005  # a near point mass (range under 1% of the other's)
    score, eps = reference_forget_score(unlearned, retrained)
    np.testing.assert_array_equal(example_epsilons(unlearned, retrained), eps)
    assert forget_quality(unlearned, retrained) == score


_columns = st.sampled_from(["normal", "integers", "hundredths", "shifted"])


@settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(models=st.integers(2, 6), kind=_columns, seed=st.integers(0, 2**16))
def test_agrees_with_the_reference_everywhere(models, kind, seed):
    rng = np.random.default_rng(seed)
    unlearned, retrained = rng.normal(0, 1, (models, 2)), rng.normal(0.3, 1.5, (models, 2))
    if kind == "integers":
        unlearned, retrained = np.round(unlearned * 2), np.round(retrained * 2)  # ties and grid points
    elif kind == "hundredths":
        unlearned, retrained = np.round(unlearned, 2), np.round(retrained, 2)
    elif kind == "shifted":
        retrained += 4.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the reference's all-NaN maxima
            score, eps = reference_forget_score(unlearned, retrained)
    except AssertionError:  # every rule discarded: the reference has no number (see above)
        assume(False)
    np.testing.assert_array_equal(example_epsilons(unlearned, retrained), eps)
    assert forget_quality(unlearned, retrained) == score


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(start=st.floats(-200, 200), width=st.floats(0.5, 8), num=st.integers(2, 500), seed=st.integers(0, 2**16))
def test_grid_ranks_are_exact_even_on_grid_points(start, width, num, seed):
    grid = np.linspace(start, start + width, num)
    rng = np.random.default_rng(seed)
    x = np.concatenate([grid, np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf), rng.uniform(start - 1, start + width + 1, 50)])
    step = np.subtract(start + width, start) / (num - 1)
    counts = _count_at_or_below(x, np.float64(start), step, np.float64(start + width), num)
    np.testing.assert_array_equal(counts, (grid[None, :] <= x[:, None]).sum(1))


# -- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(("unlearned", "retrained", "message"), [
    (np.zeros((4, 3)), np.zeros((5, 3)), r"unlearned_confs has shape \(4, 3\) but retrained_confs \(5, 3\)"),
    (np.zeros((1, 3)), np.zeros((1, 3)), "at least 2 models of each kind, got 1"),
    (np.zeros(3), np.zeros(3), r"\[models, examples\] matrix, got shape \(3,\)"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), np.zeros((2, 2)), "unlearned_confs holds 1 NaN.*model 0, example 1"),
    (np.zeros((2, 2)), np.array([[0.0, 1.0], [np.inf, 2.0]]), "retrained_confs holds 1 NaN or infinite.*model 1, example 0"),
    (np.zeros((2, 0)), np.zeros((2, 0)), "at least one example"),
])
def test_bad_confidences_get_a_clear_error(unlearned, retrained, message):
    with pytest.raises(ValueError, match=message):
        forget_quality(unlearned, retrained)
