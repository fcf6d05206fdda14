"""U-LiRA: the leave-one-model-out likelihood ratio, chance without a signal, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from unlearnkit_audit import attack_summary, example_accuracy, likelihood_ratios


def _paired_mask(models: int, examples: int, seed: int) -> np.ndarray:
    first = np.random.default_rng(seed).random((models // 2, examples)) < 0.5
    forgot = np.empty((models, examples), dtype=bool)
    forgot[0::2], forgot[1::2] = first, ~first
    return forgot


def test_each_score_is_the_log_ratio_of_gaussians_fitted_without_the_target():
    confs = np.array([[1.0], [4.0], [1.5], [3.0], [0.5], [5.5], [2.0], [4.5]])
    forgot = np.array([[True], [False]] * 4)
    scores = likelihood_ratios(confs, forgot)
    for j in range(8):
        others = np.arange(8) != j
        inside, outside = confs[others & forgot[:, 0], 0], confs[others & ~forgot[:, 0], 0]
        expected = (norm.logpdf(confs[j, 0], inside.mean(), inside.std(ddof=1))
                    - norm.logpdf(confs[j, 0], outside.mean(), outside.std(ddof=1)))
        assert scores[j, 0] == pytest.approx(expected, rel=1e-9)


def test_no_signal_means_chance():
    rng = np.random.default_rng(0)
    forgot = _paired_mask(32, 400, seed=1)
    confs = rng.normal(3, 1, (32, 400)) + rng.normal(0, 2, 400)  # per-example means, nothing about forgetting
    summary = attack_summary(likelihood_ratios(confs, forgot), forgot)
    assert abs(summary["accuracy"] - 50) < 3 and abs(summary["AUC"] - 50) < 3
    assert summary["TPR@1%FPR"] < 5


def test_a_clear_signal_is_found_on_every_example():
    rng = np.random.default_rng(2)
    forgot = _paired_mask(16, 100, seed=3)
    confs = rng.normal(0, 1, (16, 100)) + 6.0 * forgot  # models that forgot still remember
    scores = likelihood_ratios(confs, forgot)
    summary = attack_summary(scores, forgot)
    assert summary["accuracy"] > 95 and summary["AUC"] > 99 and summary["TPR@1%FPR"] > 90
    assert example_accuracy(scores, forgot).min() >= 75


def test_per_example_accuracy_counts_hits_on_each_side():
    forgot = np.array([[True, True], [False, False], [True, False], [False, True]])
    scores = np.array([[1.0, -1.0], [-1.0, -1.0], [2.0, 1.0], [1.0, -3.0]])
    # example 0: forgot models 0, 2 said yes (2/2); unseen 1 said no, 3 said yes (1/2) -> 75%
    # example 1: forgot models 0, 3 said no (0/2); unseen 1 no, 2 yes (1/2) -> 25%
    np.testing.assert_allclose(example_accuracy(scores, forgot), [75.0, 25.0])


def test_a_point_mass_on_both_sides_stays_finite():
    forgot = _paired_mask(8, 3, seed=0)
    scores = likelihood_ratios(np.full((8, 3), 103.6), forgot)
    assert np.isfinite(scores).all() and np.all(scores == 0)


@pytest.mark.parametrize(("confs", "forgot", "message"), [
    (np.zeros((6, 2)), np.ones((6, 3), bool), r"forgot has shape \(6, 3\) but confs \(6, 2\)"),
    (np.zeros((6, 2)), np.zeros((6, 2), int), "forgot must be boolean"),
    (np.zeros(6), np.zeros(6, bool), r"\[models, examples\] matrix"),
    (np.where(np.eye(6, 2) > 0, np.nan, 0.0), _paired_mask(6, 2, 0), "NaN or infinite.*model 0, example 0"),
    (np.zeros((4, 2)), _paired_mask(4, 2, 0), "has 2 models that forgot it; U-LiRA needs at least 3"),
])
def test_bad_input_gets_a_clear_error(confs, forgot, message):
    with pytest.raises(ValueError, match=message):
        likelihood_ratios(confs, forgot)
