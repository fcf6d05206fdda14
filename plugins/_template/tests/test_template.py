"""The template's sampler passes the sampler contract suite and keeps its promise."""

import pytest
import torch

from unlearnkit.testing import checks_for_kind, trained_tiny_model
from unlearnkit_template import NearestClass, NearestClassConfig


@pytest.fixture
def registered(register_component):
    register_component("sampler", "template-nearest-class", NearestClass, NearestClassConfig)
    return "template-nearest-class"


@pytest.mark.parametrize("check", checks_for_kind("sampler"), ids=lambda c: c.__name__)
def test_contract(registered, check):
    check(registered)


def test_same_class_samples_come_first():
    model, task = trained_tiny_model()
    sampler = NearestClass(NearestClassConfig())
    sampler.prepare(task.retain.x, task.retain.y, model)
    support_y = torch.tensor([0, 0, 1])
    picked = sampler.sample(task.forget.x[:3], support_y, 10, torch.Generator().manual_seed(0))
    assert torch.isin(task.retain.y[picked], support_y).all()
