"""Issue 3's acceptance check: MIA-efficacy (SalUn's SVC on the confidence) of the original
model and of Retrain on MNIST-1D with 10% random forgetting, against an independent
implementation of SalUn's `SVC_MIA` written here with numpy and scikit-learn.

The CNN1D version (the issue's setting) trains two CNN1Ds and is marked slow; the same check
on the MLP, whose original model the contract suite already trained, runs by default.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from torch import nn

import unlearnkit as uk
from unlearnkit.testing.attack_contract import memorised_model

ARCHS = ["mlp", pytest.param("cnn1d", marks=pytest.mark.slow)]


@functools.lru_cache(maxsize=2)
def _retrain_state(arch: str) -> dict[str, torch.Tensor]:
    _, task = memorised_model(arch)
    model = uk.train_model(uk.build_model(arch, task, seed=0), task.retain_full, recipe=task.recipe, seed=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def retrain_model(arch: str) -> tuple[nn.Module, uk.UnlearningTask]:
    """The Retrain gold model: `arch` trained from scratch on D_r only (cached per process)."""
    _, task = memorised_model(arch)
    model = uk.build_model(arch, task, seed=0)
    model.load_state_dict(_retrain_state(arch))
    return model.eval(), task


def salun_mia_efficacy(model: nn.Module, task: uk.UnlearningTask, seed: int = 0) -> float:
    """SalUn's `SVC_MIA` confidence column, written independently of the plugin: the softmax
    probability of the label (float32), `SVC(C=3, gamma="auto", kernel="rbf")` fitted on
    shadow_train (D_r members, label 1) + shadow_test (the test set, label 0), and efficacy =
    1 − mean(predict(D_f)). shadow_train is the core's seeded sample of D_r as large as the test set."""
    g = torch.Generator().manual_seed(seed)
    shadow_train = task.retain_full.subset(torch.randperm(len(task.retain_full), generator=g)[: len(task.test)].sort().values)

    def confidence(data: uk.ArrayDataset) -> np.ndarray:
        with torch.no_grad():
            prob = torch.softmax(model.eval()(data.x), dim=-1)
        return prob.gather(1, data.y[:, None]).numpy()

    x = np.concatenate([confidence(shadow_train), confidence(task.test)])
    y = np.concatenate([np.ones(len(shadow_train)), np.zeros(len(task.test))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * (1.0 - clf.predict(confidence(task.forget)).mean())


def _both(model: nn.Module, task: uk.UnlearningTask) -> tuple[float, float]:
    ours = uk.mia_efficacy(model, task, uk.get_attack("svc-confidence"), seed=0)
    return ours, salun_mia_efficacy(model, task, seed=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_original_model_mia_efficacy_is_low_and_matches_salun(arch: str) -> None:
    ours, reference = _both(*memorised_model(arch))
    print(f"{arch} original: MIA-efficacy {ours:.2f} (plugin), {reference:.2f} (SalUn reference)")
    assert ours < 10.0, f"{arch} original: MIA-efficacy {ours:.2f}% — D_f was trained on, it should look like members"
    assert abs(ours - reference) <= 2.5, f"{arch} original: plugin {ours:.2f} vs SalUn reference {reference:.2f}"


@pytest.mark.parametrize("arch", ARCHS)
def test_retrain_mia_efficacy_is_clearly_higher_and_matches_salun(arch: str) -> None:
    original, _ = _both(*memorised_model(arch))
    ours, reference = _both(*retrain_model(arch))
    print(f"{arch} Retrain: MIA-efficacy {ours:.2f} (plugin), {reference:.2f} (SalUn reference); original {original:.2f}")
    assert ours > original + 10.0, f"{arch}: Retrain's MIA-efficacy {ours:.2f} is not clearly above the original's {original:.2f}"
    assert abs(ours - reference) <= 2.5, f"{arch} Retrain: plugin {ours:.2f} vs SalUn reference {reference:.2f}"
