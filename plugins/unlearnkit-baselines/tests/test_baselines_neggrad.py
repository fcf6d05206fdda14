"""NegGrad+ is fine-tuning plus weighted gradient ascent, as in the SCRUB repository's `train_negrad`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.testing import state_equal, tiny_model, tiny_task, trained_tiny_model
from unlearnkit_baselines.neggrad import capped_forget_loss, distance_to_start, neggrad_plus_loss


def _loss(model, data) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.eval()(data.x), data.y).item()


@pytest.mark.parametrize("n_epochs", [1, 2, 4])
@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 5e-4)])
def test_neggrad_plus_with_beta_one_is_fine_tuning_step_for_step(n_epochs, momentum, weight_decay):
    model, task = trained_tiny_model()
    shared = dict(epochs=n_epochs, lr=0.05, batch_size=16, momentum=momentum, weight_decay=weight_decay)
    ng = uk.get_unlearner("neggrad-plus", beta=1.0, anchor=0.0, **shared).unlearn(model, task, seed=2)
    ft = uk.get_unlearner("ft", **shared).unlearn(model, task, seed=2)
    assert state_equal(ng, ft)


def test_the_anchor_holds_the_weights_near_the_original_and_defaults_to_the_recipe_s_weight_decay():
    model, task = trained_tiny_model()
    start = [p.detach().clone() for p in model.parameters()]
    settings = dict(beta=0.5, epochs=3, lr=0.05, batch_size=16)
    free = uk.get_unlearner("neggrad-plus", anchor=0.0, **settings).unlearn(model, task)
    held = uk.get_unlearner("neggrad-plus", anchor=1.0, **settings).unlearn(model, task)
    assert distance_to_start(held, start) < 0.5 * distance_to_start(free, start)
    by_rule = uk.get_unlearner("neggrad-plus")
    by_rule.unlearn(model, task)
    assert by_rule.run_info["resolved"]["anchor"] == task.recipe.weight_decay


def test_the_joint_loss_weighs_retain_by_beta_and_forget_by_one_minus_beta():
    retain, forget = torch.tensor(2.0), torch.tensor(3.0)
    assert neggrad_plus_loss(retain, forget, 0.75).item() == pytest.approx(0.75 * 2.0 - 0.25 * 3.0)
    assert neggrad_plus_loss(retain, forget, 0.0).item() == -3.0
    assert neggrad_plus_loss(retain, forget, 1.0).item() == 2.0


def test_a_lower_beta_ascends_further_on_the_forget_set_while_keeping_the_retain_set():
    model, task = trained_tiny_model()
    settings = dict(epochs=4, lr=0.05, batch_size=16, forget_batch_size=64)
    unlearned = {b: uk.get_unlearner("neggrad-plus", beta=b, chance_cap=False, **settings).unlearn(model, task) for b in (1.0, 0.8, 0.5)}
    forget_losses = [_loss(unlearned[b], task.forget) for b in (1.0, 0.8, 0.5)]
    assert forget_losses[0] < forget_losses[1] < forget_losses[2]
    assert forget_losses[2] > 50 * _loss(model, task.forget)
    with torch.no_grad():
        assert uk.accuracy(unlearned[0.5](task.retain.x), task.retain.y) >= 95.0


def _rows(batch, data) -> torch.Tensor:
    """For each row of `batch`, its position in `data` (every row must be found)."""
    match = (batch[:, None, :] == data.x[None, :, :]).all(-1)
    assert match.any(1).all()
    return match.float().argmax(1)


def test_each_retain_batch_meets_the_next_forget_batch_of_one_shuffled_pass_cycled_per_epoch():
    model, task = trained_tiny_model()
    inputs = []
    model.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
    uk.get_unlearner("neggrad-plus", beta=0.5, epochs=2, batch_size=16, forget_batch_size=8, stop="fixed").unlearn(model, task)
    steps = -(-len(task.retain) // 16)
    per_pass = -(-len(task.forget) // 8)
    assert len(inputs) == 2 * 2 * steps and steps > per_pass  # a retain then a forget forward per step
    retain = torch.cat([_rows(x, task.retain) for x in inputs[0::2]])
    assert torch.equal(retain.sort().values, torch.arange(len(task.retain)).repeat_interleave(2))  # D̂_r twice
    forget = [_rows(x, task.forget) for x in inputs[1::2]]
    orders = []
    for epoch in (forget[:steps], forget[steps:]):
        first_pass = torch.cat(epoch[:per_pass])
        assert torch.equal(first_pass.sort().values, torch.arange(len(task.forget)))  # all of D_f, once
        assert all(torch.equal(b, epoch[i % per_pass]) for i, b in enumerate(epoch))  # then the same pass again
        orders.append(first_pass)
    assert not torch.equal(orders[0], orders[1])  # a fresh order each epoch


def test_the_chance_cap_stops_the_ascent_on_a_sample_once_it_is_rated_below_chance():
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0], [1.0, 1.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])  # the second sample's CE (≈ 9) is past ln 4; the others are below it
    per_sample = F.cross_entropy(logits, y, reduction="none")
    assert per_sample[1] > math.log(4) > max(per_sample[0], per_sample[2])
    capped = capped_forget_loss(logits, y, math.log(4))
    assert capped.item() == pytest.approx((per_sample[0] + math.log(4) + per_sample[2]).item() / 3)
    (grad,) = torch.autograd.grad(capped, logits)
    (plain,) = torch.autograd.grad(F.cross_entropy(logits, y), logits)
    assert torch.equal(grad[1], torch.zeros(4))
    assert torch.allclose(grad[[0, 2]], plain[[0, 2]])
    assert torch.equal(capped_forget_loss(logits, y, None), F.cross_entropy(logits, y))


def test_on_whole_class_forgetting_the_capped_ascent_forgets_the_class_where_the_reference_s_diverges():
    task = tiny_task(forget="class:1")
    model = uk.train_model(tiny_model(task), task, seed=0).eval()
    settings = dict(beta=0.5, epochs=8, lr=0.2, batch_size=16, forget_batch_size=32)
    with pytest.raises(uk.DivergenceError, match="neggrad-plus: loss became nan"):
        uk.get_unlearner("neggrad-plus", chance_cap=False, **settings).unlearn(model, task)  # no floor under the ascent
    capped = uk.get_unlearner("neggrad-plus", **settings)
    unlearned = capped.unlearn(model, task)
    assert capped.run_info["resolved"]["forget_cap"] == pytest.approx(math.log(task.num_classes))
    assert math.isfinite(_loss(unlearned, task.forget))
    with torch.no_grad():
        assert uk.accuracy(unlearned(task.forget.x), task.forget.y) < 25.0  # the class is forgotten
        assert uk.accuracy(unlearned(task.retain.x), task.retain.y) >= 95.0
