"""Every baseline at its defaults does something, and the defaults follow the written translation rule."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.testing import state_equal, tiny_model, tiny_task, trained_tiny_model
from unlearnkit_baselines import scrub
from unlearnkit_baselines._common import batch_for_steps, sgd, steps_per_epoch
from unlearnkit_baselines.plugin import BASELINES
from unlearnkit_baselines.scrub import RECIPES, max_steps, min_steps


def _true_class_confidence(model, data) -> float:
    with torch.no_grad():
        return F.softmax(model.eval()(data.x), 1).gather(1, data.y[:, None]).mean().item()


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"retrain"}))
def test_every_method_at_its_defaults_changes_the_weights_and_lowers_the_forget_confidence(name):
    model, _ = trained_tiny_model()  # memorises its training set: true-class confidence 0.999 on class 1
    task = tiny_task(forget="class:1")
    unlearner = uk.get_unlearner(name)
    assert getattr(unlearner.config, "stop", "fixed") == "fixed"  # the paper's length by default
    unlearned = unlearner.unlearn(model, task, seed=0)
    assert not state_equal(unlearned, model)
    assert _true_class_confidence(unlearned, task.forget) < _true_class_confidence(model, task.forget)


@pytest.mark.parametrize("steps, n", [(s, n) for s in (7, 8) for n in (100, 360, 4_000, 18_000)] + [(18, 360), (18, 4_500), (18, 18_000)])
def test_a_pass_over_d_f_takes_the_reference_s_steps_whatever_its_size(steps, n):
    assert steps_per_epoch(n, batch_for_steps(n, steps)) == steps


@pytest.mark.parametrize("forget, recipe", [("class:1", "class"), ("random:0.1", "random"), ("random:0.5", "random")])
def test_scrub_takes_the_reference_s_max_steps_a_pass_for_very_different_forget_sets(monkeypatch, forget, recipe):
    passes = []

    def spy(student, teacher, batches, optimizer, **kwargs):
        batches = list(batches)
        passes.append(len(batches))
        return max_steps(student, teacher, batches, optimizer, **kwargs)

    monkeypatch.setattr(scrub, "max_steps", spy)
    task = tiny_task(forget=forget, retain_access=1.0, num_samples=2_000)  # |D_f| 361 (class), 144 or 720
    model = uk.train_model(tiny_model(task), task, seed=0)
    unlearner = uk.get_unlearner("scrub")
    unlearner.unlearn(model, task, seed=0)
    expected = RECIPES[recipe]
    assert passes == [expected["forget_steps_per_pass"]] * expected["max_epochs"]
    assert unlearner.run_info["resolved"]["recipe"] == recipe


def test_scrub_takes_its_learning_rate_and_retain_batch_relative_to_the_task_recipe():
    model, task = trained_tiny_model()
    unlearner = uk.get_unlearner("scrub")
    unlearner.unlearn(model, task)
    run = unlearner.run_info["resolved"]
    assert run["lr"] == pytest.approx(0.05 * task.recipe.lr)  # the reference's 5e-4 against its originals' 0.01
    assert run["batch_size"] == round(0.25 * task.recipe.batch_size)  # its retain batch 32 against their 128


@pytest.mark.parametrize("name, ratio", [("ft", 0.1), ("randl", 0.1), ("salun", 0.13), ("ga", 1e-3), ("neggrad-plus", 1.0), ("l1-sparse", 0.1), ("sfron", 0.2)])
def test_a_learning_rate_left_to_the_rule_is_the_reference_s_ratio_times_the_recipe_s(name, ratio):
    model, task = trained_tiny_model()
    unlearner = uk.get_unlearner(name)
    unlearner.unlearn(model, task)
    assert unlearner.run_info["resolved"]["lr"] == pytest.approx(ratio * task.recipe.lr)
    assert uk.get_unlearner(name, lr=0.123).config.lr == 0.123  # a number given overrides the rule


@pytest.mark.parametrize("name, ratio", [("ft", 1.0), ("randl", 1.0), ("salun", 1.0), ("l1-sparse", 1.0), ("sfron", 1.0), ("amnesiac", 2.0), ("badt", 1.0)])
def test_a_batch_left_to_the_rule_is_the_reference_s_ratio_times_the_recipe_s(name, ratio):
    model, _ = trained_tiny_model()
    task = tiny_task()  # a task of its own: trained_tiny_model's is shared
    task.recipe = uk.TrainConfig(**{**uk.unstructure_config(task.recipe), "batch_size": 24})
    unlearner = uk.get_unlearner(name, **getattr(type(uk.get_unlearner(name)), "contract_config", {}))
    unlearner.unlearn(model, task)
    assert unlearner.run_info["resolved"]["batch_size"] == round(ratio * 24)


def _kl_by_hand(p_logits: torch.Tensor, q_logits: torch.Tensor, t: float) -> torch.Tensor:
    """KL(p ‖ q) of the softened outputs, summed over classes, times T², averaged over the batch."""
    p, log_p, log_q = F.softmax(p_logits / t, 1), F.log_softmax(p_logits / t, 1), F.log_softmax(q_logits / t, 1)
    return (p * (log_p - log_q)).sum(1).mean() * t**2


@pytest.mark.parametrize("phase", ["max", "min"])
def test_scrub_s_steps_take_the_kl_from_the_teacher_to_the_student(phase):
    teacher, task = trained_tiny_model()
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # a student that differs from its teacher, so the KL has a gradient
        g = torch.Generator().manual_seed(0)
        for p in student.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    data = task.forget if phase == "max" else task.retain
    x, y = data.x[:16], data.y[:16]
    t, gamma, alpha, lr = 4.0, 0.7, 0.6, 0.1

    by_hand = copy.deepcopy(student).train()
    kl = _kl_by_hand(teacher.eval()(x).detach(), by_hand(x), t)  # teacher first: KL(teacher ‖ student)
    loss = -kl if phase == "max" else gamma * F.cross_entropy(by_hand(x), y) + alpha * kl
    grads = torch.autograd.grad(loss, list(by_hand.parameters()))
    expected = [p.detach() - lr * g for p, g in zip(by_hand.parameters(), grads)]

    optimizer = sgd(student, lr, momentum=0.0, weight_decay=0.0)
    if phase == "max":
        max_steps(student, teacher, [(x, y)], optimizer, temperature=t, step=0)
    else:
        min_steps(student, teacher, [(x, y)], optimizer, temperature=t, gamma=gamma, alpha=alpha, step=0)
    for p, e in zip(student.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)


def _readme_defaults() -> dict[str, dict[str, object]]:
    """The README's config table: {method: {option: default}}, a row with no method cell continuing the one above."""
    import ast
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    table = text[text.index("## Config options"):text.index("## Choices where")]
    found: dict[str, dict[str, object]] = {}
    method = None
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 5 or not cells[1].startswith("`"):
            continue
        method = cells[0].strip("`") or method
        found.setdefault(method, {})[cells[1].strip("`")] = ast.literal_eval(cells[2].strip("`"))
    return found


def test_the_readme_lists_every_option_with_the_default_its_config_has():
    readme = _readme_defaults()
    stop = readme.pop("every method that trains")
    for name in sorted(set(BASELINES) - {"retrain"}):
        defaults = uk.unstructure_config(uk.get_unlearner(name).config)
        own = {k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items() if k not in stop}
        assert readme[name] == own, name
        assert all(defaults[k] == v for k, v in stop.items() if k in defaults), name


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"retrain", "fisher", "ssd"}))
def test_training_passes_are_balanced_exactly_when_the_model_has_batch_norm(name, monkeypatch):
    import unlearnkit.engine.training as training

    task = tiny_task()
    seen: list[bool] = []
    plain = training.batches

    def spy(data, batch_size, *, generator=None, device="cpu", balanced=False):
        if generator is not None:  # a training pass (evaluation and importance passes go in order)
            seen.append(balanced)
        return plain(data, batch_size, generator=generator, device=device, balanced=balanced)

    monkeypatch.setattr(uk, "batches", spy)
    monkeypatch.setattr(training, "batches", spy)
    bn = torch.nn.Sequential(torch.nn.Linear(task.input_shape[0], 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, task.num_classes))
    for model, expected in ((tiny_model(task), False), (bn, True)):
        seen.clear()
        unlearner = uk.get_unlearner(name, **getattr(type(uk.get_unlearner(name)), "contract_config", {}))
        unlearner.unlearn(model, task, seed=0)
        assert seen and set(seen) == {expected}, (name, expected)
