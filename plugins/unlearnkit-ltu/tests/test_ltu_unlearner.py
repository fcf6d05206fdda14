"""The `ltu` unlearner on a tiny task, with in-process test doubles for its components."""

from __future__ import annotations

from types import SimpleNamespace

import attrs
import pytest
import torch

import unlearnkit as uk
from unlearnkit.testing import state_equal

from unlearnkit_ltu import LtuConfig, LtuUnlearner


def _params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_ltu_is_registered_with_its_config_class():
    assert "ltu" in uk.list_unlearners()
    ltu = uk.get_unlearner("ltu", iterations=7)
    assert isinstance(ltu, LtuUnlearner) and ltu.config == LtuConfig(iterations=7)


def test_unlearn_returns_a_changed_new_model_and_leaves_the_input_alone(doubles, tiny):
    model, task = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = uk.get_unlearner("ltu", doubles.config()).unlearn(model, task, seed=0)
    assert new is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not state_equal(new, model)
    assert not new.training


def test_same_seed_same_model_other_seed_other_model(doubles, tiny):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", doubles.config())
    a, b = ltu.unlearn(model, task, seed=5), ltu.unlearn(model, task, seed=5)
    c = ltu.unlearn(model, task, seed=6)
    assert state_equal(a, b)
    assert not state_equal(a, c)


def test_reads_only_forget_retain_and_val(doubles, tiny):
    model, task = tiny
    view = task.view(LtuUnlearner.reads, who="ltu")
    uk.get_unlearner("ltu", doubles.config()).unlearn(model, view)
    assert view.accessed == {"forget", "retain", "val"}
    assert LtuUnlearner.reads == {"forget", "retain", "val"}


def test_forgetting_the_forget_set_lowers_its_accuracy(doubles, tiny):
    model, task = tiny
    new = uk.get_unlearner("ltu", doubles.config(iterations=40, lr=0.02)).unlearn(model, task)
    before, after = uk.evaluate(model, task, attack=None), uk.evaluate(new, task, attack=None)
    assert after["UA"] > before["UA"]


def test_update_is_the_combined_gradient_through_the_outer_optimizer(doubles, tiny):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", doubles.config(momentum=0.0, weight_decay=0.0, lr=0.05))
    run = ltu.prepare(model, task, seed=0)
    before = _params(model)
    scale = run.iteration()["step_scale"]  # η_t = η α_t / α
    (g_r, g_f, g), = doubles.combined
    expected = before - 0.05 * scale * torch.cat([t.reshape(-1) for t in g])
    torch.testing.assert_close(_params(model), expected)
    assert doubles.calls["test-project"]["reset"] == 1


def test_bank_needs_differentiable_attacks(doubles, tiny):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", doubles.config(bank=("test-mi-loss", "test-mi-nondiff")))
    with pytest.raises(uk.UsageError, match="test-mi-nondiff.*not differentiable"):
        ltu.unlearn(model, task)


@pytest.mark.parametrize("polyak", [True, False])
def test_diverging_run_names_the_iteration_and_the_setting_to_lower(doubles, tiny, polyak):
    model, task = tiny
    ltu = uk.get_unlearner("ltu", doubles.config(lr=1e12, inner_lr=1e6, iterations=20, polyak=polyak))
    with pytest.raises(uk.DivergenceError, match=r"^ltu: .* became (nan|inf|-inf) at iteration \d+; lower (lr|inner_lr) \(now 1e\+(12|06)\)"):
        ltu.unlearn(model, task)


def test_non_finite_model_is_reported_before_any_update(doubles, tiny):
    model, task = tiny
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    run = uk.get_unlearner("ltu", doubles.config()).prepare(model, task)
    with pytest.raises(uk.DivergenceError, match=r"^ltu: the random-label loss .* at iteration 1, before any update: the model's own outputs"):
        run.iteration()


@pytest.mark.parametrize("part, message", [
    ("forget", "the forget set is empty; LTU needs at least 1 sample, got 0: there is nothing to unlearn"),
    ("retain", "D̂_r, the retained data LTU may read, is empty; LTU needs at least 1 sample, got 0: raise the task's retain_access (γ)"),
    ("val", "the MI bank needs non-members and D_val is empty; LTU needs at least 1 sample, got 0: "
            "give the task a validation split or set forget_feedback = false"),
])
def test_below_each_minimum_ltu_is_refused_in_one_line_naming_the_size_and_the_minimum(doubles, tiny, part, message):
    """One sample of D_f, of D̂_r and, with the forgetting feedback, of D_val (docs/ltu.md "Small data")."""
    model, task = tiny
    parts = {name: getattr(task, name) for name in ("forget", "retain", "val")}
    parts[part] = parts[part].subset(torch.arange(0))
    empty = SimpleNamespace(**parts, num_classes=task.num_classes)
    with pytest.raises(uk.UsageError) as refused:
        uk.get_unlearner("ltu", doubles.config()).prepare(model, empty)
    assert str(refused.value) == f"ltu: {message}"
    if part == "val":  # without the bank D_val is not needed
        uk.get_unlearner("ltu", doubles.config(forget_feedback=False)).prepare(model, empty).iteration()


def test_unknown_component_names_are_reported_by_the_registry(doubles, tiny):
    model, task = tiny
    with pytest.raises(uk.UnknownComponentError, match="no-such-sampler"):
        uk.get_unlearner("ltu", doubles.config(samplers=("no-such-sampler",))).unlearn(model, task)


def _batch_norm_model(task) -> torch.nn.Module:
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, task.num_classes)
    )
    return uk.train_model(model, task, seed=0).train()


def test_with_batch_statistics_the_running_statistics_are_recomputed_over_the_retained_data(doubles):
    task = uk.testing.tiny_task(0)
    model = _batch_norm_model(task)
    new = uk.get_unlearner("ltu", doubles.config()).unlearn(model, task)
    assert not torch.equal(new.state_dict()["0.weight"], model.state_dict()["0.weight"]) and not new.training
    with torch.no_grad():
        retained, forgotten = new[0](task.retain.x), new[0](task.forget.x)  # the final weights' pre-BatchNorm features
    mean, var = new.state_dict()["1.running_mean"], new.state_dict()["1.running_var"]
    assert not torch.equal(mean, model.state_dict()["1.running_mean"])
    torch.testing.assert_close(mean, retained.mean(0), atol=0.02, rtol=0.02)  # D̂_r's statistics under θ_T
    torch.testing.assert_close(var, retained.var(0), atol=0.05, rtol=0.1)
    both = torch.cat([retained, forgotten])
    assert (mean - retained.mean(0)).abs().sum() < (mean - both.mean(0)).abs().sum()  # D_f is not in them


def test_with_running_statistics_the_buffers_stay_the_original_s(doubles):
    task = uk.testing.tiny_task(0)
    model = _batch_norm_model(task)
    new = uk.get_unlearner("ltu", doubles.config(batch_norm="running")).unlearn(model, task)
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(new.state_dict()[key], model.state_dict()[key])
    assert not torch.equal(new.state_dict()["0.weight"], model.state_dict()["0.weight"])
    assert not new.training


@pytest.mark.parametrize("batch_norm", ["batch", "running"])
def test_the_mi_bank_is_fit_on_the_logits_the_forgetting_feedback_reads(doubles, monkeypatch, batch_norm):
    """With batch statistics the audit set's logits are batch-statistics ones, so the bank is fit on
    such logits too: on a model whose running statistics are far off, not on the eval-mode ones."""
    task = uk.testing.tiny_task(0)
    model = _batch_norm_model(task).eval()
    with torch.no_grad():  # running statistics far from any batch's
        model[1].running_mean += 3.0
        model[1].running_var *= 0.01
    fitted, get_attack = [], uk.get_attack

    def recording(*args, **kwargs):  # each bank model records the member logits it is fit on
        attack = get_attack(*args, **kwargs)
        fit = attack.fit
        attack.fit = lambda members, non_members: fitted.append(members[0]) or fit(members, non_members)
        return attack

    monkeypatch.setattr(uk, "get_attack", recording)
    uk.get_unlearner("ltu", doubles.config(iterations=1, batch_norm=batch_norm)).prepare(model, task)
    with torch.no_grad():
        eval_mode = model(task.retain.x)
        batch_stats = model.train()(task.retain.x)  # one batch of all of D̂_r: its own statistics
    expected, other = (batch_stats, eval_mode) if batch_norm == "batch" else (eval_mode, batch_stats)
    assert len(fitted) == len(doubles.bank)
    for members in fitted:
        assert (members.mean(0) - expected.mean(0)).abs().max() < 0.2 * (expected.mean(0) - other.mean(0)).abs().max()
        if batch_norm == "running":
            torch.testing.assert_close(members, eval_mode)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"iterations": -1}, r"\$.ltu.iterations: must be >= 0, got -1"),
        ({"bank": ["mi-logreg"]}, r"\$.ltu.bank: needs at least 2"),
        ({"bank": ["a", "a"]}, r"\$.ltu.bank: names must be distinct"),
        ({"samplers": []}, r"\$.ltu.samplers: needs at least 1"),
        ({"inner_lr": -1.0}, r"\$.ltu.inner_lr: must be > 0, got -1.0"),
        ({"momentum": 1.0}, r"\$.ltu.momentum: must be in \[0.0, 1.0\)"),
        ({"sampler_configs": {"other": {}}}, r"\$.ltu.sampler_configs: configures \['other'\]"),
        ({"remember_feedback": False, "forget_feedback": False}, r"\$.ltu.forget_feedback: .*cannot both be false"),
        ({"inner_step": 1}, r"unknown key"),
    ],
)
def test_bad_settings_name_the_field(overrides, message):
    with pytest.raises(uk.ConfigError, match=message):
        uk.get_unlearner("ltu", overrides)


def test_config_round_trips():
    config = LtuConfig(samplers=("random",), sampler_configs={"random": {}}, combiner_config={"protect": "both"})
    assert uk.structure_config(LtuConfig, uk.unstructure_config(config)) == config


def test_length_from_budget_is_a_fraction_of_retraining_cost(doubles, tiny):
    from unlearnkit_ltu.config import CURVATURE_ITERATION_COST, ITERATION_COST, iterations_for

    model, task = tiny
    retrain_steps = task.recipe.epochs * len(task.retain_full) / task.recipe.batch_size
    assert iterations_for(LtuConfig(budget=0.5), task) == round(0.5 * retrain_steps / CURVATURE_ITERATION_COST)
    for cheaper in ({"curvature": False}, {"first_order": True}, {"meta_opt": False}):  # no Hessian-vector products
        assert iterations_for(LtuConfig(budget=0.5, **cheaper), task) == round(0.5 * retrain_steps / ITERATION_COST)
    assert iterations_for(LtuConfig(budget=0.5, iterations=7), task) == 7  # an explicit T wins
    ltu = uk.get_unlearner("ltu", doubles.config(iterations=0, budget=0.5))
    ltu.unlearn(model, task, seed=0)
    assert ltu.run_info["steps"] == iterations_for(ltu.config, task) and ltu.run_info["stop_reason"] == "fixed"


@pytest.mark.parametrize("recipe_lr", [0.05, 0.002])
def test_step_sizes_left_to_the_rule_keep_their_ratio_to_the_recipe_s_lr(doubles, tiny, recipe_lr):
    """η = 0.01 × and α = 1 × the lr the task's recipe trained the original with (docs/ltu.md
    "Decisions"): what the outer optimizer and the meta-tune step use, and what the run records."""
    model, task = tiny
    view = SimpleNamespace(forget=task.forget, retain=task.retain, val=task.val, num_classes=task.num_classes,
                           recipe=attrs.evolve(task.recipe, lr=recipe_lr))
    run = uk.get_unlearner("ltu", doubles.config(lr=None, inner_lr=None)).prepare(model, view)
    assert (run.lr, run.inner_lr) == (pytest.approx(0.01 * recipe_lr), pytest.approx(recipe_lr))
    assert run.iteration()["step_scale"] <= 1  # α_t ≤ α
    assert run.optimizer.param_groups[0]["lr"] <= run.lr
    ltu = uk.get_unlearner("ltu", doubles.config(lr=None, inner_lr=None, iterations=1))
    ltu.unlearn(model, task)
    assert ltu.run_info["resolved"] == {"lr": pytest.approx(0.01 * task.recipe.lr), "inner_lr": pytest.approx(task.recipe.lr)}
    ltu = uk.get_unlearner("ltu", doubles.config(lr=0.123, inner_lr=None, iterations=1))
    ltu.unlearn(model, task)
    assert ltu.run_info["resolved"]["lr"] == 0.123  # a number given overrides the rule
