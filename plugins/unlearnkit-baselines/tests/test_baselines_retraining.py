"""Retrain, FT and GA do what their references do."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from unlearnkit.testing import state_equal, tiny_model, trained_tiny_model
from unlearnkit_baselines._common import reinitialize


def _loss(model: nn.Module, data: uk.ArrayDataset) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.eval()(data.x), data.y).item()


# -- retrain ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 4])
def test_retrain_equals_training_from_scratch_on_the_remaining_set(seed):
    model, task = trained_tiny_model()
    retrained = uk.get_unlearner("retrain").unlearn(model, task, seed=seed)
    scratch = uk.train_model(tiny_model(task, seed=seed), task.retain_full, recipe=task.recipe, seed=seed)
    assert state_equal(retrained, scratch)


def test_retrain_does_not_depend_on_the_input_weights():
    model, task = trained_tiny_model(0)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-3.0).add_(1.0)
    unlearner = uk.get_unlearner("retrain")
    assert state_equal(unlearner.unlearn(model, task, seed=2), unlearner.unlearn(other, task, seed=2))


@pytest.mark.parametrize(("name", "input_shape", "num_classes"), [("mlp", (16,), 4), ("cnn1d", (1, 40), 10)])
def test_reinitialize_reproduces_build_model(name, input_shape, num_classes):
    shape = SimpleNamespace(input_shape=input_shape, num_classes=num_classes)
    trained = uk.build_model(name, shape, seed=11)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    assert state_equal(reinitialize(trained, seed=7), uk.build_model(name, shape, seed=7))


def test_reinitialize_redraws_parameters_no_module_resets():
    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.full((8,), 5.0))
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(x + self.token)

    model = reinitialize(WithToken(), seed=0)
    assert not torch.equal(model.token, torch.full((8,), 5.0))
    assert model.token.abs().max() < 0.2  # drawn from N(0, 0.02²)
    again = reinitialize(WithToken(), seed=0)
    assert state_equal(model, again)


# -- ft ---------------------------------------------------------------------------------------


def test_ft_is_sgd_on_the_accessible_retain_set_only():  # at the rule's lr (0.1 × the recipe's) and batch (the recipe's)
    model, task = trained_tiny_model()
    cfg = uk.get_unlearner("ft").config
    recipe = uk.TrainConfig(
        epochs=cfg.epochs, batch_size=task.recipe.batch_size, lr=0.1 * task.recipe.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, schedule="constant",
    )
    expected = uk.train_model(copy.deepcopy(model), task.retain, recipe=recipe, seed=5)
    assert state_equal(uk.get_unlearner("ft").unlearn(model, task, seed=5), expected)


def test_ft_lowers_the_retain_loss():
    _, task = trained_tiny_model()
    short = uk.TrainConfig(epochs=1, batch_size=32, lr=0.01, momentum=0.0, weight_decay=0.0, schedule="constant")
    undertrained = uk.train_model(tiny_model(task), task, recipe=short, seed=0)
    tuned = uk.get_unlearner("ft").unlearn(undertrained, task)
    assert _loss(tuned, task.retain) < 0.8 * _loss(undertrained, task.retain)


# -- ga ---------------------------------------------------------------------------------------


def test_ga_raises_the_forget_loss():
    model, task = trained_tiny_model()  # 29 forget samples: one step an epoch, so more epochs
    ascended = uk.get_unlearner("ga", lr=0.0045, forget_steps_per_pass=1, epochs=40).unlearn(model, task)
    assert _loss(ascended, task.forget) > 2 * _loss(model, task.forget)


def test_ga_ascends_more_with_a_larger_learning_rate():
    model, task = trained_tiny_model()
    small = uk.get_unlearner("ga", lr=0.003, forget_steps_per_pass=1, epochs=20).unlearn(model, task)
    large = uk.get_unlearner("ga", lr=0.012, forget_steps_per_pass=1, epochs=20).unlearn(model, task)
    assert _loss(model, task.forget) < _loss(small, task.forget) < _loss(large, task.forget)
