"""LTU at its defaults on the paper's architectures (ResNet-18 with BatchNorm, ViT with
LayerNorm), trained on a small image folder the test writes: accuracy kept (before the fix
of issue #24 a torchvision ResNet-18 fell to chance after one iteration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import unlearnkit as uk

COLOURS = {"apple": (150, 100, 100), "leaf": (100, 150, 100), "sky": (100, 100, 150)}


def _photos(root: Path, n_train: int = 80, n_test: int = 20, size: int = 8) -> Path:
    """docs/your-data.md's toy folder, larger: noisy one-colour PNGs, one colour per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 90, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}-{i:02d}.png")
    return root


def _confidence(model: torch.nn.Module, data) -> float:
    """Mean probability of the true class."""
    with torch.no_grad():
        return torch.softmax(model.eval()(data.x), 1).gather(1, data.y[:, None]).mean().item()


# The folder recipe (SGD lr 0.05) leaves vit-tiny at chance on this folder (RA 35 after 10 epochs):
# the test would pass on a model that learnt nothing, so the ViT gets an lr it trains under (and
# LTU, by its rule, η and α relative to it: docs/ltu.md "Decisions").
@pytest.mark.parametrize("model_name, recipe, forgets", [
    ("torchvision:resnet18", {"epochs": 10}, False),
    pytest.param("resnet18", {"epochs": 10}, False, marks=pytest.mark.slow),
    pytest.param("vit-tiny", {"epochs": 30, "lr": 0.01}, True, marks=pytest.mark.slow),
    # a sharp ViT: without the curvature bound one iteration took it to RA 34, TA 38 (docs/ltu.md)
    pytest.param("vit-tiny", {"epochs": 30, "lr": 0.002}, False, marks=pytest.mark.slow),
])
def test_ltu_defaults_keep_retain_and_test_accuracy(tmp_path, model_name, recipe, forgets):
    torch.manual_seed(0)
    root = _photos(tmp_path / "photos")
    task = uk.make_task(f"folder:{root}", forget="random:0.1", retain_access=0.3, seed=0, data_dir=tmp_path / "cache")
    task.recipe = uk.TrainConfig(**{**uk.unstructure_config(task.recipe), **recipe})
    model = uk.train_model(uk.build_model(model_name, task, seed=0), task.train, recipe=task.recipe, seed=0)
    before = uk.evaluate(model, task, attack=None)
    assert before["RA"] >= 95, before  # an original that learnt the folder
    for config in [{}, {"iterations": 40}] if forgets else [{}]:
        ltu = uk.get_unlearner("ltu", config)
        new = ltu.unlearn(model, task.view(ltu.reads, who="ltu"), seed=0)
        after = uk.evaluate(new, task, attack=None)
        assert abs(after["RA"] - before["RA"]) <= 5 and abs(after["TA"] - before["TA"]) <= 5, (config, before, after)
    if forgets:  # the rule's T = 2 moves the confidence by 3e-5 here, 40 iterations by 0.03 (docs/ltu.md)
        assert _confidence(new, task.forget) < _confidence(model, task.forget) - 0.01
