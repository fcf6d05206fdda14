"""RandL, Amnesiac, SalUn and BadT: their labels, masks and teachers are what the references use."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import unlearnkit as uk
from unlearnkit.testing import state_equal, trained_tiny_model
from unlearnkit_baselines import relabel
from unlearnkit_baselines._common import uniform_labels, wrong_labels
from unlearnkit_baselines.badteacher import bad_teacher_loss, incompetent_teacher
from unlearnkit_baselines.relabel import random_label_batches
from unlearnkit_baselines.salun import saliency_mask


def _forget_loss(model, task) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.eval()(task.forget.x), task.forget.y).item()


# -- labels -----------------------------------------------------------------------------------


def test_random_labels_are_uniform_over_all_classes():
    labels = uniform_labels(20_000, 7, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=7)
    assert len(counts) == 7
    assert chisquare(counts.numpy()).pvalue > 1e-3


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.integers(2, 12), st.integers(1, 300), st.integers(0, 2**31 - 1))
def test_wrong_labels_never_give_the_true_label(num_classes, n, seed):
    y = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(seed + 1))
    wrong = wrong_labels(y, num_classes, torch.Generator().manual_seed(seed))
    assert wrong.shape == y.shape
    assert (wrong != y).all()
    assert ((0 <= wrong) & (wrong < num_classes)).all()


def test_wrong_labels_are_uniform_over_the_other_classes():
    y = torch.full((30_000,), 2)
    counts = torch.bincount(wrong_labels(y, 5, torch.Generator().manual_seed(3)), minlength=5)
    assert counts[2] == 0
    assert chisquare(counts[[0, 1, 3, 4]].numpy()).pvalue > 1e-3


def test_wrong_labels_need_two_classes():
    with pytest.raises(uk.UsageError, match="at least 2 classes"):
        wrong_labels(torch.zeros(3, dtype=torch.long), 1, torch.Generator())


def test_amnesiac_trains_on_forget_samples_with_wrong_labels_only(monkeypatch):
    seen = []
    original_concat = relabel.concat

    def spy(*parts):
        seen.append(parts)
        return original_concat(*parts)

    monkeypatch.setattr(relabel, "concat", spy)
    model, task = trained_tiny_model()
    unlearned = uk.get_unlearner("amnesiac", stop="fixed").unlearn(model, task)
    (forget, retain), = seen
    assert torch.equal(forget.indices, task.forget.indices) and torch.equal(forget.x, task.forget.x)
    assert (forget.y != task.forget.y).all()
    assert torch.equal(retain.y, task.retain.y) and torch.equal(retain.indices, task.retain.indices)
    assert _forget_loss(unlearned, task) > _forget_loss(model, task)


# -- randl ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mix", ["shuffled", "forget-first"])
def test_random_label_epochs_relabel_the_forget_set_afresh_and_keep_retain_labels(mix):
    _, task = trained_tiny_model()
    g = torch.Generator().manual_seed(0)
    epochs = [
        list(random_label_batches(task.forget, task.retain, 4, mix=mix, batch_size=16, generator=g, device="cpu"))
        for _ in range(2)
    ]
    forget_labels = []
    for batches in epochs:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        assert len(x) == len(task.forget) + len(task.retain)
        is_forget = (x[:, None, :] == task.forget.x[None, :, :]).all(-1)
        is_retain = (x[:, None, :] == task.retain.x[None, :, :]).all(-1)
        assert (is_forget.sum(1) + is_retain.sum(1) == 1).all()  # every sample drawn once, from one part
        assert torch.equal(y[is_retain.any(1)], task.retain.y[is_retain.float().argmax(1)[is_retain.any(1)]])
        order = is_forget.float().argmax(1)[is_forget.any(1)]
        forget_labels.append(torch.empty_like(task.forget.y).scatter_(0, order, y[is_forget.any(1)]))
        if mix == "forget-first":
            assert is_forget[: len(task.forget)].any(1).all()
    assert not torch.equal(forget_labels[0], forget_labels[1])  # fresh labels every epoch


def test_randl_raises_the_forget_loss_and_keeps_the_retain_set():
    model, task = trained_tiny_model()
    unlearned = uk.get_unlearner("randl").unlearn(model, task)
    assert _forget_loss(unlearned, task) > 2 * _forget_loss(model, task)
    with torch.no_grad():
        assert uk.accuracy(unlearned(task.retain.x), task.retain.y) >= 95.0


# -- salun ------------------------------------------------------------------------------------


def _independent_saliency(model, task, batch_size):
    model = copy.deepcopy(model).eval()
    total = [torch.zeros_like(p) for p in model.parameters()]
    for x, y in uk.batches(task.forget, batch_size):
        model.zero_grad()
        (-F.cross_entropy(model(x), y)).backward()
        total = [t + p.grad for t, p in zip(total, model.parameters())]
    return torch.cat([t.abs().flatten() for t in total])


@pytest.mark.parametrize("sparsity", [0.5, 0.1, 0.93])
def test_saliency_mask_keeps_exactly_the_global_top_fraction(sparsity):
    model, task = trained_tiny_model()
    mask = saliency_mask(model, task.forget, sparsity, batch_size=8, device=torch.device("cpu"))
    assert list(mask) == [n for n, _ in model.named_parameters()]
    flat = torch.cat([m.flatten() for m in mask.values()])
    assert int(flat.sum()) == int(sparsity * flat.numel())
    saliency = _independent_saliency(model, task, batch_size=8)
    assert saliency[flat].min() >= saliency[~flat].max()
    fractions = {name: m.float().mean().item() for name, m in mask.items()}
    assert max(fractions.values()) - min(fractions.values()) > 0.05  # ranked globally, not per layer


def test_salun_never_moves_masked_out_weights_despite_momentum_and_weight_decay():
    model, task = trained_tiny_model()
    cfg = uk.get_unlearner("salun").config
    assert cfg.momentum > 0 and cfg.weight_decay > 0
    mask = saliency_mask(model, task.forget, cfg.sparsity, batch_size=task.recipe.batch_size, device=torch.device("cpu"))
    unlearned = uk.get_unlearner("salun").unlearn(model, task)
    before, after = dict(model.named_parameters()), dict(unlearned.named_parameters())
    for name, keep in mask.items():
        assert torch.equal(after[name][~keep], before[name][~keep]), name
    moved = torch.cat([(after[n] != before[n])[m] for n, m in mask.items()])
    assert moved.float().mean() > 0.5
    assert _forget_loss(unlearned, task) > 2 * _forget_loss(model, task)


@pytest.mark.parametrize("mix", ["shuffled", "forget-first"])
def test_salun_with_a_full_mask_is_randl(mix):
    model, task = trained_tiny_model()
    settings_ = dict(epochs=3, lr=0.02, batch_size=16, mix=mix)
    salun = uk.get_unlearner("salun", sparsity=1.0, stop="fixed", **settings_).unlearn(model, task, seed=2)
    randl = uk.get_unlearner("randl", **settings_).unlearn(model, task, seed=2)
    assert state_equal(salun, randl)


# -- badt -------------------------------------------------------------------------------------


def _kl(teacher, student, data) -> float:
    with torch.no_grad():
        return F.kl_div(F.log_softmax(student(data.x), 1), F.softmax(teacher(data.x), 1), reduction="batchmean").item()


def test_bad_teacher_pulls_forget_outputs_toward_the_random_teacher():
    model, task = trained_tiny_model()
    unlearned = uk.get_unlearner("badt", lr=1e-3, epochs=20).unlearn(model, task, seed=3)
    random_teacher = incompetent_teacher(model, seed=3)
    assert _kl(random_teacher, unlearned, task.forget) < 0.7 * _kl(random_teacher, model, task.forget)
    assert _kl(model, unlearned, task.retain) < 0.1  # while D̂_r stays with the competent teacher


def test_bad_teacher_loss_follows_each_samples_teacher():
    g = torch.Generator().manual_seed(0)
    competent, incompetent = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    is_forget = torch.tensor([1, 0, 1, 0, 0, 1])
    student = torch.where(is_forget.bool()[:, None], incompetent, competent)
    assert bad_teacher_loss(student, competent, incompetent, is_forget, 1.0).abs() < 1e-6
    assert bad_teacher_loss(competent, competent, incompetent, is_forget, 1.0) > 1e-3
    assert bad_teacher_loss(student * 4, competent * 4, incompetent * 4, is_forget, 4.0).abs() < 1e-6


def test_incompetent_teacher_is_random_frozen_and_seeded():
    model, _ = trained_tiny_model()
    teacher = incompetent_teacher(model, seed=1)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert not state_equal(teacher, model)
    assert state_equal(teacher, incompetent_teacher(model, seed=1))
    assert all(p.requires_grad for p in model.parameters())
