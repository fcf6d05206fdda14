"""A user's own sampler plugs into LTU by name: the example plugin under examples/custom-sampler."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

import unlearnkit as uk

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom-sampler"


def _register_example(register_component, monkeypatch):
    """Run the example plugin's own hook with the in-process registration fixture."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in [m for m in sys.modules if m.startswith("unlearnkit_same_class")]:
        monkeypatch.delitem(sys.modules, name)
    plugin = importlib.import_module("unlearnkit_same_class.plugin")
    plugin.unlearnkit_register_samplers(register=lambda name, factory, cls: register_component("sampler", name, factory, cls))
    return importlib.import_module("unlearnkit_same_class.sampler")


def test_example_declares_its_entry_point():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["unlearnkit"] == {"same-class": "unlearnkit_same_class.plugin"}
    assert (EXAMPLE / "unlearnkit_same_class" / "plugin.py").is_file()


def test_custom_sampler_is_used_by_ltu_without_code_changes(doubles, tiny, register_component, monkeypatch):
    model, task = tiny
    example = _register_example(register_component, monkeypatch)
    drawn = []
    real_sample = example.SameClass.sample

    def spy(self, support_x, support_y, k, generator):
        positions = real_sample(self, support_x, support_y, k, generator)
        drawn.append((support_x.clone(), support_y.clone(), positions.clone()))
        return positions

    monkeypatch.setattr(example.SameClass, "sample", spy)
    ltu = uk.get_unlearner("ltu", doubles.config(samplers=("same-class", "test-random"), query_size=8))
    ltu.unlearn(model, task)
    assert len(drawn) == ltu.config.iterations
    pool_y = task.retain.y
    for support_x, support_y, positions in drawn:
        # the support is a batch of D_f with its true labels (not the random labels of L_tune)
        match = (support_x.reshape(len(support_x), 1, -1) == task.forget.x.reshape(1, len(task.forget), -1)).all(-1)
        assert (match.sum(1) == 1).all()
        assert torch.equal(task.forget.y[match.float().argmax(1)], support_y)
        assert len(positions) == 8 and len(torch.unique(positions)) == 8
        assert torch.isin(pool_y[positions], support_y).all()  # enough same-class samples in the pool
    assert doubles.calls["test-random"]["sample"] == ltu.config.iterations


def test_custom_sampler_fills_up_with_other_classes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_same_class_sampler", EXAMPLE / "unlearnkit_same_class" / "sampler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sampler = module.SameClass(module.SameClassConfig())
    pool_y = torch.tensor([0, 1, 2, 1, 0, 2, 1])
    sampler.prepare(torch.zeros(7, 3), pool_y, None)
    positions = sampler.sample(torch.zeros(2, 3), torch.tensor([1, 1]), 5, torch.Generator().manual_seed(0))
    assert sorted(positions[:3].tolist()) == [1, 3, 6]
    assert len(torch.unique(positions)) == 5 and not torch.isin(pool_y[positions[3:]], torch.tensor([1])).any()
