"""What LTU relies on from the samplers beyond the generic contract."""

from __future__ import annotations

import copy

import pytest
import torch

import unlearnkit as uk
from unlearnkit.core.plugins import registry
from unlearnkit.testing import trained_tiny_model
from unlearnkit_samplers import FeatureNN, FeatureNNConfig, LabelNN, LabelNNConfig
from unlearnkit_samplers.embedding import FrozenOriginal

NAMES = ["feature-nn", "label-nn", "random"]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_plugin_registers_the_three_samplers_under_its_distribution():
    for name in NAMES:
        assert registry.get("sampler", name).package == "unlearnkit-samplers"


def test_configs_are_validated_with_the_field_path():
    assert uk.get_sampler("feature-nn").config == FeatureNNConfig(features="penultimate", metric="cosine", tie_break="random", batch_size=512)
    assert uk.get_sampler("label-nn").config == LabelNNConfig(label_space="softmax", metric="l2", tie_break="random", batch_size=512)
    with pytest.raises(uk.ConfigError, match=r"\$\.feature-nn\.features: must be one of 'penultimate', 'input', got 'pixels'"):
        uk.get_sampler("feature-nn", features="pixels")
    with pytest.raises(uk.ConfigError, match=r"\$\.label-nn\.label_space: must be one of 'softmax', 'class', got 'onehot'"):
        uk.get_sampler("label-nn", label_space="onehot")
    with pytest.raises(uk.ConfigError, match=r"\$\.label-nn\.batch_size: must be > 0, got 0"):
        uk.get_sampler("label-nn", batch_size=0)


def test_random_is_a_prefix_of_a_generator_permutation():
    model, task = trained_tiny_model()
    sampler = uk.get_sampler("random")
    sampler.prepare(task.retain.x, task.retain.y, None)
    got = sampler.sample(task.forget.x[:3], task.forget.y[:3], 17, seeded(7))
    assert torch.equal(got, torch.randperm(len(task.retain), generator=seeded(7))[:17])


def test_label_nn_class_space_draws_the_support_classes_first_then_fills():
    model, task = trained_tiny_model()
    pool_y = task.retain.y
    sampler = uk.get_sampler("label-nn", label_space="class")
    sampler.prepare(task.retain.x, pool_y, None)
    support_x, support_y = task.forget.x[:2], torch.tensor([1, 1])
    matching = int((pool_y == 1).sum())
    few = sampler.sample(support_x, support_y, matching - 5, seeded(0))
    assert bool((pool_y[few] == 1).all())
    many = sampler.sample(support_x, support_y, matching + 5, seeded(0))
    assert bool((pool_y[many[:matching]] == 1).all()) and not bool((pool_y[many[matching:]] == 1).any())
    assert not torch.equal(few, sampler.sample(support_x, support_y, matching - 5, seeded(1))), "order should follow the generator"


def test_a_query_runs_the_model_on_the_support_batch_only():
    """Pool-wide work happens once in prepare, in batches; a query embeds only the support."""
    for name in ("feature-nn", "label-nn"):
        model, task = trained_tiny_model()
        rows: list[int] = []
        model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
        sampler = uk.get_sampler(name, batch_size=50)
        sampler.prepare(task.retain.x, task.retain.y, model)
        assert sum(rows) == len(task.retain) and max(rows) <= 50
        rows.clear()
        for seed in range(3):
            support = slice(8 * seed, 8 * seed + 8)
            sampler.sample(task.forget.x[support], task.forget.y[support], 20, seeded(seed))
        assert rows == [8, 8, 8]


def test_samplers_of_one_model_share_its_forward_passes():
    """feature-nn and label-nn prepared with the same model embed the pool once and each support once."""
    model, task = trained_tiny_model()
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    samplers = [uk.get_sampler(name) for name in ("feature-nn", "label-nn")]
    for sampler in samplers:
        sampler.prepare(task.retain.x, task.retain.y, model)
    assert sum(rows) == len(task.retain)
    rows.clear()
    support_x, support_y = task.forget.x[:8], task.forget.y[:8]
    shared = [s.sample(support_x.clone(), support_y, 20, seeded(0)) for s in samplers]
    assert rows == [8]
    alone = []
    for name in ("feature-nn", "label-nn"):  # each with its own copy of the model: the same positions
        sampler = uk.get_sampler(name)
        sampler.prepare(task.retain.x, task.retain.y, copy.deepcopy(model))
        alone.append(sampler.sample(support_x, support_y, 20, seeded(0)))
    assert all(torch.equal(a, b) for a, b in zip(shared, alone))


def test_rows_embedded_before_cost_no_forward_pass():
    """The frozen original remembers outputs per input row (LTU revisits each forget sample)."""
    model, task = trained_tiny_model()
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    sampler = uk.get_sampler("feature-nn")
    sampler.prepare(task.retain.x, task.retain.y, model)
    rows.clear()
    sampler.sample(task.forget.x[:12], task.forget.y[:12], 20, seeded(0))
    again = sampler.sample(task.forget.x[4:10], task.forget.y[4:10], 20, seeded(1))
    sampler.sample(task.forget.x[8:16], task.forget.y[8:16], 20, seeded(2))
    assert rows == [12, 8]  # rows seen before: no forward; one new row: the whole batch again
    fresh = uk.get_sampler("feature-nn")
    fresh.prepare(task.retain.x, task.retain.y, copy.deepcopy(model))
    assert torch.equal(again, fresh.sample(task.forget.x[4:10], task.forget.y[4:10], 20, seeded(1)))


def test_the_row_memory_is_bounded_and_drops_the_oldest_rows():
    model, task = trained_tiny_model()
    x = task.forget.x[:8]
    with torch.no_grad():
        expected = model.eval()(x)
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    original = FrozenOriginal(model)
    original.max_rows = 4
    torch.testing.assert_close(original.outputs(x, batch_size=16)[1], expected)
    original.outputs(x[4:], batch_size=16)  # the newest four are remembered
    original.outputs(x[:4], batch_size=16)  # the oldest four were dropped
    assert rows == [8, 4]


def test_samplers_keep_using_the_frozen_original_model():
    """Updating the model after prepare (as LTU does) does not change what the sampler compares."""
    model, task = trained_tiny_model()
    support_x, support_y = task.forget.x[:5], task.forget.y[:5]
    for name in ("feature-nn", "label-nn"):
        sampler = uk.get_sampler(name)
        sampler.prepare(task.retain.x, task.retain.y, model)
        before = sampler.sample(support_x, support_y, 30, seeded(0))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-3.0)
        assert torch.equal(before, sampler.sample(support_x, support_y, 30, seeded(0)))


def test_settings_that_need_the_model_say_so_and_the_others_do_not():
    model, task = trained_tiny_model()
    for name in ("feature-nn", "label-nn"):
        with pytest.raises(uk.UsageError, match="needs the original model"):
            uk.get_sampler(name).prepare(task.retain.x, task.retain.y, None)
    for name, config in (("feature-nn", {"features": "input"}), ("label-nn", {"label_space": "class"}), ("random", {})):
        sampler = uk.get_sampler(name, **config)
        sampler.prepare(task.retain.x, task.retain.y, None)
        assert len(sampler.sample(task.forget.x[:2], task.forget.y[:2], 4, seeded())) == 4


@pytest.mark.parametrize("name", NAMES)
def test_misuse_is_refused_with_a_clear_message(name):
    model, task = trained_tiny_model()
    sampler = uk.get_sampler(name)
    with pytest.raises(uk.UsageError, match=r"call prepare\(pool_x, pool_y, model\) before sample\(\)"):
        sampler.sample(task.forget.x[:2], task.forget.y[:2], 3, seeded())
    with pytest.raises(uk.UsageError, match="pool_x has 5 samples but pool_y has 4"):
        sampler.prepare(task.retain.x[:5], task.retain.y[:4], model)
    sampler.prepare(task.retain.x, task.retain.y, model)
    with pytest.raises(uk.UsageError, match="k must be a non-negative integer, got -1"):
        sampler.sample(task.forget.x[:2], task.forget.y[:2], -1, seeded())


def test_nearest_neighbours_need_a_support_sample():
    model, task = trained_tiny_model()
    sampler = uk.get_sampler("feature-nn")
    sampler.prepare(task.retain.x, task.retain.y, model)
    with pytest.raises(uk.UsageError, match="the support batch is empty"):
        sampler.sample(task.forget.x[:0], task.forget.y[:0], 3, seeded())


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_pool_gives_no_positions(name):
    model, task = trained_tiny_model()
    sampler = uk.get_sampler(name)
    sampler.prepare(task.retain.x[:0], task.retain.y[:0], model)
    got = sampler.sample(task.forget.x[:2], task.forget.y[:2], 5, seeded())
    assert got.dtype == torch.long and got.shape == (0,)


def test_classes_can_be_built_directly_with_their_defaults():
    assert FeatureNN().config == FeatureNNConfig() and LabelNN().config == LabelNNConfig()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_model_and_pool(name):
    model, task = trained_tiny_model()
    model = model.cuda()
    pool_x, pool_y = task.retain.x.cuda(), task.retain.y.cuda()
    sampler = uk.get_sampler(name)
    sampler.prepare(pool_x, pool_y, model)
    got = sampler.sample(task.forget.x[:4].cuda(), task.forget.y[:4].cuda(), 25, seeded(3))
    assert got.device.type == "cuda" and got.dtype == torch.long and len(torch.unique(got)) == 25
    assert int(got.min()) >= 0 and int(got.max()) < len(pool_x)
    cpu = uk.get_sampler(name)
    cpu.prepare(task.retain.x, task.retain.y, trained_tiny_model()[0])
    assert len(set(got.tolist()) & set(cpu.sample(task.forget.x[:4], task.forget.y[:4], 25, seeded(3)).tolist())) >= 20 or name == "random"
