"""Behaviour of each attack beyond the shared contract: SVC agreement, the loss threshold, and
the differentiable MI models' training (balance, frozen parameters, devices)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.svm import SVC

import unlearnkit as uk
from unlearnkit_attacks.svc import SvcAttack
from unlearnkit_attacks.threshold import best_threshold


def _logits(seed: int, n: int, boost: float, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=g)
    logits = 2.0 * torch.randn(n, classes, generator=g)
    logits[torch.arange(n), labels] += boost + 2.0 * torch.rand(n, generator=g)
    return logits, labels


MEMBERS, NON_MEMBERS, QUERY = _logits(0, 300, 5.0), _logits(1, 200, 1.5), _logits(2, 400, 3.0)


@pytest.mark.parametrize("name", ["svc-confidence", "svc-entropy", "svc-m-entropy", "svc-prob", "svc-correctness"])
def test_svc_proba_is_below_half_exactly_where_the_svc_predicts_non_member(name: str) -> None:
    attack = uk.get_attack(name).fit(MEMBERS, NON_MEMBERS)
    p = attack.predict_proba(*QUERY)
    predicted_member = attack.svc.predict(attack.features(*QUERY)) == 1
    assert np.array_equal((p >= 0.5).numpy(), predicted_member)
    if name != "svc-correctness":  # graded scores, not two values
        assert len(torch.unique(p)) > 10


def test_svc_confidence_is_salun_s_svc_on_the_label_probability() -> None:
    attack = uk.get_attack("svc-confidence").fit(MEMBERS, NON_MEMBERS)
    assert (attack.svc.C, attack.svc.gamma, attack.svc.kernel) == (3.0, "auto", "rbf")
    x = torch.cat([torch.softmax(MEMBERS[0].double(), -1).gather(1, MEMBERS[1][:, None]),
                   torch.softmax(NON_MEMBERS[0].double(), -1).gather(1, NON_MEMBERS[1][:, None])]).numpy()
    reference = SVC(C=3, gamma="auto", kernel="rbf").fit(x, np.r_[np.ones(300), np.zeros(200)])
    query = torch.softmax(QUERY[0].double(), -1).gather(1, QUERY[1][:, None]).numpy()
    np.testing.assert_allclose(attack.decision_function(*QUERY), reference.decision_function(query), rtol=1e-6, atol=1e-9)


def test_svc_config_gamma_and_fit_cap() -> None:
    attack = uk.get_attack("svc-prob", C=1.0, gamma="0.5", max_fit_samples=50, seed=3).fit(MEMBERS, NON_MEMBERS)
    assert attack.svc.gamma == 0.5 and attack.svc.C == 1.0
    assert attack.svc.shape_fit_ == (100, 10)  # 50 members + 50 non-members
    with pytest.raises(uk.ConfigError, match=r"\$\.svc-prob\.gamma: must be 'auto', 'scale' or a positive number, got '-1'"):
        uk.get_attack("svc-prob", gamma="-1")
    with pytest.raises(uk.ConfigError, match=r"\$\.svc-confidence\.C: must be > 0, got 0"):
        uk.get_attack("svc-confidence", C=0.0)


@pytest.mark.parametrize("name", ["svc-confidence", "loss-threshold", "mi-logreg"])
def test_predicting_before_fit_or_fitting_without_both_sides_is_refused(name: str) -> None:
    with pytest.raises(RuntimeError, match="fit"):
        uk.get_attack(name).predict_proba(*QUERY)
    empty = (torch.empty(0, 10), torch.empty(0, dtype=torch.long))
    with pytest.raises(ValueError, match="members and non-members"):
        uk.get_attack(name).fit(MEMBERS, empty)


def test_best_threshold_maximises_balanced_accuracy() -> None:
    members = torch.tensor([0.1, 0.2, 0.3, 2.0])
    non_members = torch.tensor([0.25, 1.0, 1.5, 3.0, 4.0, 5.0])
    # t in (0.3, 1.0) catches 3/4 members and 5/6 non-members: 0.7917, the best; midpoint 0.65.
    assert best_threshold(members, non_members) == pytest.approx(0.65)
    assert best_threshold(torch.tensor([1.0]), torch.tensor([1.0])) < 1.0  # identical: call all non-member


def test_loss_threshold_scores_half_at_the_threshold_and_fall_with_the_loss() -> None:
    attack = uk.get_attack("loss-threshold").fit(MEMBERS, NON_MEMBERS)
    t = attack.threshold
    # Two-class logits whose loss is t − 0.001, t, t + 0.001 and t + 1.
    p_true = torch.exp(-torch.tensor([t - 1e-3, t, t + 1e-3, t + 1.0], dtype=torch.float64))
    logits = torch.stack([p_true.log(), (1 - p_true).log()], dim=1)
    scores = attack.predict_proba(logits, torch.zeros(4, dtype=torch.long))
    assert scores[0] > 0.5 and scores[1] == pytest.approx(0.5, abs=1e-6) and scores[2] < 0.5
    assert (scores[:-1] >= scores[1:]).all()
    # On the fit data: member iff loss <= t, and no other threshold does better.
    loss = torch.cat([F.cross_entropy(MEMBERS[0].double(), MEMBERS[1], reduction="none"),
                      F.cross_entropy(NON_MEMBERS[0].double(), NON_MEMBERS[1], reduction="none")])
    called = torch.cat([attack.predict_proba(*MEMBERS), attack.predict_proba(*NON_MEMBERS)]) >= 0.5
    assert torch.equal(called, loss <= t)
    def balanced_accuracy(member: torch.Tensor) -> float:
        return 0.5 * (member[:300].double().mean() + (~member[300:]).double().mean()).item()

    achieved = balanced_accuracy(called)
    assert achieved > 0.75
    assert all(balanced_accuracy(loss <= other) <= achieved + 1e-12 for other in loss.tolist())


MI = ["mi-logreg", "mi-mlp-sorted", "mi-mlp-label"]


@pytest.mark.parametrize("name", MI)
def test_mi_model_is_frozen_after_fit_and_standardises_with_fit_statistics(name: str) -> None:
    attack = uk.get_attack(name, balance="weight", holdout=0.0).fit(MEMBERS, NON_MEMBERS)  # trains on every sample
    assert not any(p.requires_grad for p in attack.model.parameters())
    assert not attack.model.training
    x = torch.cat([attack.features(*MEMBERS), attack.features(*NON_MEMBERS)]).float()
    standardise = attack.model[0]
    torch.testing.assert_close(standardise.mean, x.mean(0))
    torch.testing.assert_close(standardise(x).mean(0), torch.zeros(x.shape[1]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MI)
def test_mi_bce_is_balanced_between_members_and_non_members(name: str) -> None:
    # The same distribution on both sides, 10x more members: a balanced fit stays near 0.5 on
    # average, an unbalanced one would call nearly everything a member.
    members, non_members = _logits(5, 1000, 3.0), _logits(6, 100, 3.0)
    attack = uk.get_attack(name).fit(members, non_members)
    mean_p = attack.predict_proba(*_logits(7, 2000, 3.0)).mean().item()
    assert 0.35 < mean_p < 0.65


@pytest.mark.parametrize("name", MI)
def test_mi_model_learns_to_separate_and_its_loss_trains_only_the_logits(name: str) -> None:
    attack = uk.get_attack(name).fit(MEMBERS, NON_MEMBERS)
    assert attack.predict_proba(*MEMBERS).mean() > attack.predict_proba(*NON_MEMBERS).mean() + 0.2
    logits = QUERY[0].clone().requires_grad_()
    loss = F.binary_cross_entropy(attack.predict_proba(logits, QUERY[1]), torch.zeros(len(logits)))
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert all(p.grad is None for p in attack.model.parameters())
    torch.testing.assert_close(torch.sigmoid(attack.membership_logit(*QUERY)), attack.predict_proba(*QUERY))


def test_mi_model_refuses_logits_with_another_number_of_classes() -> None:
    attack = uk.get_attack("mi-mlp-label").fit(MEMBERS, NON_MEMBERS)
    with pytest.raises(ValueError, match="10 classes"):
        attack.predict_proba(*_logits(0, 5, 1.0, classes=5))


def test_mi_config_validation_names_the_field() -> None:
    with pytest.raises(uk.ConfigError, match=r"\$\.mi-mlp-sorted\.hidden: must be > 0, got 0"):
        uk.get_attack("mi-mlp-sorted", hidden=[16, 0])
    with pytest.raises(uk.ConfigError, match=r"\$\.mi-logreg\.lr: must be > 0, got -1"):
        uk.get_attack("mi-logreg", lr=-1.0)


def test_mi_seed_changes_the_fit() -> None:
    a = uk.get_attack("mi-mlp-sorted", seed=0).fit(MEMBERS, NON_MEMBERS).predict_proba(*QUERY)
    b = uk.get_attack("mi-mlp-sorted", seed=1).fit(MEMBERS, NON_MEMBERS).predict_proba(*QUERY)
    assert not torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", [*MI, "svc-confidence", "loss-threshold"])
def test_attacks_run_on_cuda_logits(name: str) -> None:
    members, non_members, query = ((x.cuda(), y.cuda()) for x, y in (MEMBERS, NON_MEMBERS, QUERY))
    on_gpu = uk.get_attack(name).fit(members, non_members)
    p = on_gpu.predict_proba(*query)
    assert p.device.type == "cuda" and p.shape == (400,)
    on_cpu = uk.get_attack(name).fit(MEMBERS, NON_MEMBERS)
    expected = on_cpu.predict_proba(*QUERY).detach()
    logits = query[0].clone().requires_grad_(on_cpu.differentiable)
    q = on_cpu.predict_proba(logits, query[1])  # fitted on the CPU, used on CUDA logits
    assert q.device.type == "cuda"
    torch.testing.assert_close(q.detach().cpu(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p.detach().cpu(), expected, atol=0.05, rtol=0)  # fitted on either device
    if on_cpu.differentiable:
        q.sum().backward()
        assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["mi-mlp-sorted", "mi-mlp-label"])
def test_mi_fit_keeps_the_step_that_generalises_and_its_gradients_stay_small(name: str) -> None:
    # Members and non-members from one distribution: whatever a fit learns beyond chance is
    # noise. Trained to the end, the MLP carves sharp boundaries around the training samples;
    # the held-out choice stops before that, and its slopes w.r.t. the logits (what LTU's
    # forgetting feedback backpropagates) stay small.
    members, non_members = _logits(11, 200, 3.0), _logits(12, 200, 3.0)
    probe = _logits(13, 400, 3.0)

    def slope(attack: Any) -> float:
        logits = probe[0].clone().requires_grad_(True)
        attack.membership_logit(logits, probe[1]).sum().backward()
        return float(logits.grad.norm(dim=1).mean())

    early = uk.get_attack(name, holdout=0.2, steps=600).fit(members, non_members)
    late = uk.get_attack(name, holdout=0.0, steps=600).fit(members, non_members)
    assert slope(early) < 0.5 * slope(late)
    with torch.no_grad():
        p = early.predict_proba(*probe)
    assert abs(float(p.mean()) - 0.5) < 0.1  # close to chance, as it should be on pure noise
