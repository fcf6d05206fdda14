"""The training loop, the Unlearner base class and evaluation."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.testing import state_equal, tiny_model, tiny_task, trained_tiny_model


@functools.lru_cache(maxsize=1)
def mnist1d_original():
    task = uk.make_task("mnist1d", forget="random:0.1", seed=0)
    return uk.train_model(uk.build_model("cnn1d", task, seed=0), task, seed=0), task


def test_cnn1d_memorises_mnist1d():
    """The paper's regime: RA 100 (the model memorises D_r) and TA >= 90."""
    model, task = mnist1d_original()
    metrics = uk.evaluate(model, task, attack=None)
    assert metrics["RA"] == 100.0
    assert metrics["TA"] >= 90.0
    assert metrics["UA"] == 0.0  # D_f was trained on, too


def test_training_is_deterministic_under_a_seed():
    task = tiny_task()
    a = uk.train_model(tiny_model(task, seed=1), task, seed=1)
    b = uk.train_model(tiny_model(task, seed=1), task, seed=1)
    c = uk.train_model(tiny_model(task, seed=2), task, seed=2)
    assert state_equal(a, b)
    assert not state_equal(a, c)


def test_divergence_is_reported_with_method_and_step():
    task = tiny_task()
    with pytest.raises(uk.DivergenceError, match=r"train: loss became (nan|inf) at step \d+"):
        uk.train_model(tiny_model(task), task, recipe=uk.TrainConfig(epochs=50, lr=1e6, momentum=0.99))


def test_evaluate_definitions():
    model, task = trained_tiny_model()
    metrics = uk.evaluate(model, task, attack=None)
    logits = {p: uk.predict_logits(model, getattr(task, p)) for p in ("forget", "retain_full", "test")}
    assert metrics["UA"] == pytest.approx(100 - uk.accuracy(logits["forget"], task.forget.y))
    assert metrics["RA"] == pytest.approx(uk.accuracy(logits["retain_full"], task.retain_full.y))
    assert metrics["TA"] == pytest.approx(uk.accuracy(logits["test"], task.test.y))
    assert uk.gap({"UA": 5.0, "RA": 99.0}, {"UA": 3.0, "RA": 100.0}) == {"UA": 2.0, "RA": 1.0, "avg": 1.5}


class _Greedy(uk.Unlearner):
    reads = frozenset({"forget"})

    def run(self, model, task, *, seed, device, progress):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        _ = task.retain  # undeclared
        return model


class _Noisy(uk.Unlearner):
    reads = frozenset({"forget"})

    def run(self, model, task, *, seed, device, progress):
        _ = task.forget
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        return model


@uk.config_class
class _NoConfig:
    pass


def test_unlearner_base_guards_inputs_data_and_seeds():
    model, task = trained_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(uk.DataAccessError, match=r"_Greedy read task.retain but declares reads=\['forget'\]"):
        _Greedy(_NoConfig()).unlearn(model, task)
    a = _Noisy(_NoConfig()).unlearn(model, task, seed=4)
    b = _Noisy(_NoConfig()).unlearn(model, task, seed=4)
    assert state_equal(a, b) and not state_equal(a, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_penultimate_features_are_the_head_input():
    model, task = trained_tiny_model()
    x = task.test.x[:5]
    feats = uk.penultimate_features(model, x)
    assert feats.shape == (5, 32)
    torch.testing.assert_close(model[-1](feats), model(x))
    same, logits = uk.features_and_logits(model.train(), x)
    assert torch.equal(same, feats) and torch.equal(logits, model.eval()(x)) and not logits.requires_grad


@pytest.mark.parametrize("name, shape", [("mlp", (16,)), ("cnn1d", (1, 40)), ("cnn2d", (1, 28, 28)), ("cnn2d", (3, 17, 9)), ("resnet18", (3, 32, 32)), ("vit-tiny", (3, 32, 32))])
def test_models_build_for_their_inputs(name, shape):
    spec = type("Spec", (), {"input_shape": shape, "num_classes": 7})
    model = uk.build_model(name, spec, seed=0)
    assert state_equal(model, uk.build_model(name, spec, seed=0))
    assert not state_equal(model, uk.build_model(name, spec, seed=1))
    assert model.eval()(torch.zeros(2, *shape)).shape == (2, 7)
    assert isinstance(uk.models.head(model), nn.Linear)


def test_cnn2d_names_the_image_size_it_cannot_pool():
    with pytest.raises(uk.UsageError, match=r"cnn2d pools twice by 2 and needs images of at least 4x4 pixels, got 3x8"):
        uk.build_model("cnn2d", type("S", (), {"input_shape": (1, 3, 8), "num_classes": 2}))


def test_resnet18_has_the_cifar_stem():
    model = uk.build_model("resnet18", type("S", (), {"input_shape": (3, 32, 32), "num_classes": 10}))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_balanced_batches_cover_a_pass_in_as_many_batches_with_no_small_remainder():
    data = uk.ArrayDataset(torch.arange(130.0)[:, None], torch.zeros(130, dtype=torch.long))
    plain = [len(y) for _, y in uk.batches(data, 64, generator=torch.Generator().manual_seed(0))]
    balanced = list(uk.batches(data, 64, generator=torch.Generator().manual_seed(0), balanced=True))
    assert plain == [64, 64, 2]
    assert [len(y) for _, y in balanced] == [44, 43, 43]
    assert sorted(torch.cat([x for x, _ in balanced]).flatten().tolist()) == list(range(130))
    assert [len(y) for _, y in uk.batches(data, 200, balanced=True)] == [130]
    odd = uk.ArrayDataset(data.x[:29], data.y[:29])
    assert [len(y) for _, y in uk.batches(odd, 2, balanced=True)] == [3] + [2] * 13  # never a batch of one
    assert [len(y) for _, y in uk.batches(uk.ArrayDataset(data.x[:1], data.y[:1]), 4, balanced=True)] == [1]


def _batch_norm_mlp(task) -> nn.Module:
    return nn.Sequential(nn.Linear(task.input_shape[0], 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, task.num_classes))


def test_training_a_batchnorm_model_never_ends_a_pass_on_a_batch_of_one():
    task = uk.testing.tiny_task()
    data = uk.ArrayDataset(task.train.x[:65], task.train.y[:65])  # 64 + 1: one sample alone has no batch statistics
    model = uk.train_model(_batch_norm_mlp(task), data, recipe=uk.TrainConfig(epochs=2, batch_size=64), seed=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert uk.has_batch_norm(model) and not uk.has_batch_norm(uk.testing.tiny_model(task))


def test_recomputed_batchnorm_statistics_are_the_data_s_under_the_current_weights():
    task = uk.testing.tiny_task()
    model = _batch_norm_mlp(task)
    with torch.no_grad():
        features = model[0](task.retain.x)
    out = uk.recompute_batch_norm(model, task.retain, len(task.retain), generator=torch.Generator().manual_seed(0))
    assert out is model and not model.training
    torch.testing.assert_close(model[1].running_mean, features.mean(0))
    torch.testing.assert_close(model[1].running_var, features.var(0))
    mlp = uk.testing.tiny_model(task)
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    uk.recompute_batch_norm(mlp, task.retain, 64, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
