"""Every baseline passes the shipped unlearner contract suite, and the suite catches breaches."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

import unlearnkit as uk
from unlearnkit.testing import unlearner_contract as contract
from unlearnkit.testing.contracts import parametrize_with_checks
from unlearnkit_baselines.plugin import BASELINES
from unlearnkit_baselines.retrain import RetrainConfig


@parametrize_with_checks("unlearner", list(BASELINES))
def test_baselines_unlearner_contract(name, check):
    check(name)


# -- the suite fails methods that break the contract ----------------------------------------------


class Honest(uk.Unlearner):
    reads: ClassVar[frozenset[str]] = frozenset({"forget"})

    def run(self, model, task, *, seed, device, progress):
        task.forget
        return model.eval()

    @classmethod
    def search_space(cls, trial, space):
        return {}


class DeclaresTest(Honest):
    reads = frozenset({"forget", "test"})


class MutatesInput(Honest):
    def unlearn(self, model, task, **kwargs):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return super().unlearn(model, task, **kwargs)


class FlipsInputMode(Honest):
    def unlearn(self, model, task, **kwargs):
        model.eval()
        return super().unlearn(model, task, **kwargs)


class TouchesGlobalRng(Honest):
    def unlearn(self, model, task, **kwargs):
        torch.rand(1)
        return super().unlearn(model, task, **kwargs)


class MutatesTask(Honest):
    def run(self, model, task, *, seed, device, progress):
        task.forget.y[0] = (task.forget.y[0] + 1) % task.num_classes
        return model.eval()


class ReturnsInput(Honest):
    def unlearn(self, model, task, **kwargs):
        return model


class ReturnsTrainMode(Honest):
    def run(self, model, task, *, seed, device, progress):
        return model.train()


class Unseeded(Honest):
    calls = 0

    def run(self, model, task, *, seed, device, progress):
        type(self).calls += 1
        with torch.no_grad():
            next(model.parameters()).add_(type(self).calls)
        return model.eval()


class ReadsUndeclared(Honest):
    def run(self, model, task, *, seed, device, progress):
        task.retain
        return model.eval()


class Explodes(Honest):
    def run(self, model, task, *, seed, device, progress):
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return model.eval()


class NoSpace(Honest):
    search_space = uk.Unlearner.search_space


class SpaceOfUnknownField(Honest):
    @classmethod
    def search_space(cls, trial, space):
        return {"lr": space.lr(trial)}  # RetrainConfig has no lr


class SpaceWithoutItsDefault(Honest):
    @classmethod
    def search_space(cls, trial, space):
        return {"epochs": trial.suggest_int("epochs", 20, 30)}  # FTConfig's default is 10


class SpaceOfInvalidPoints(Honest):
    @classmethod
    def search_space(cls, trial, space):
        return {"epochs": space.int(trial, "epochs", -1000, 10)}  # epochs must be positive


class SpaceReturnsOtherValues(Honest):
    @classmethod
    def search_space(cls, trial, space):
        return {"epochs": 2 * space.int(trial, "epochs", 1, 10)}


BREACHES = [
    (DeclaresTest, contract.check_declares_readable_parts, "test split"),
    (MutatesInput, contract.check_leaves_input_untouched, "modified the input model"),
    (FlipsInputMode, contract.check_leaves_input_untouched, "train/eval mode"),
    (TouchesGlobalRng, contract.check_leaves_input_untouched, "global RNG"),
    (MutatesTask, contract.check_leaves_input_untouched, "task's"),
    (ReturnsInput, contract.check_returns_new_model_of_same_architecture, "the input model itself"),
    (ReturnsTrainMode, contract.check_returns_new_model_of_same_architecture, "train mode"),
    (Unseeded, contract.check_same_seed_same_model_on_cpu, "differ"),
    (ReadsUndeclared, contract.check_reads_only_declared_parts, "beyond its declared reads"),
    (Explodes, contract.check_finishes_with_finite_outputs, "non-finite"),
    (NoSpace, contract.check_search_space_builds_valid_configs, "declares no search space"),
    (SpaceOfUnknownField, contract.check_search_space_builds_valid_configs, "not a field of RetrainConfig"),
]
SPACE_BREACHES = [  # on FTConfig, which has epochs
    (SpaceWithoutItsDefault, "does not contain its default"),
    (SpaceOfInvalidPoints, "is not a valid config"),
    (SpaceReturnsOtherValues, "but suggested"),
]


def test_an_honest_unlearner_passes_every_check(register_component):
    register_component("unlearner", "test-honest", Honest, RetrainConfig)
    for check in contract.CHECKS:
        check("test-honest")


@pytest.mark.parametrize(("cls", "check", "message"), BREACHES, ids=[c.__name__ for c, _, _ in BREACHES])
def test_the_contract_suite_catches_a_breach(register_component, cls, check, message):
    register_component("unlearner", "test-breach", cls, RetrainConfig)
    task = None
    if cls is MutatesTask:
        from unlearnkit.testing import trained_tiny_model

        task = trained_tiny_model()[1]
        saved = task.forget.y.clone()
    try:
        with pytest.raises(AssertionError, match=message):
            check("test-breach")
    finally:
        if task is not None:
            task.forget.y.copy_(saved)  # the tiny task is cached for the whole session


@pytest.mark.parametrize(("cls", "message"), SPACE_BREACHES, ids=[c.__name__ for c, _ in SPACE_BREACHES])
def test_the_contract_suite_catches_a_bad_search_space(register_component, cls, message):
    register_component("unlearner", "test-space", cls, BASELINES["ft"][1])
    with pytest.raises(AssertionError, match=message):
        contract.check_search_space_builds_valid_configs("test-space")


def test_contract_config_overrides_apply_to_every_check(register_component):
    seen = []

    class Slow(Honest):
        contract_config: ClassVar[dict] = {"epochs": 2}

        def run(self, model, task, *, seed, device, progress):
            seen.append(self.config.epochs)
            return super().run(model, task, seed=seed, device=device, progress=progress)

    register_component("unlearner", "test-slow", Slow, BASELINES["ft"][1])
    contract.check_same_seed_same_model_on_cpu("test-slow")
    assert seen == [2, 2]
