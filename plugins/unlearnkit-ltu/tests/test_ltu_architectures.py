"""LTU at its defaults on the paper's architectures (ResNet-18 with BatchNorm, ViT with
LayerNorm), trained on a small image folder the test writes (300 images of 16 px): accuracy
kept (before the fix of issue #24 a torchvision ResNet-18 fell to chance after one iteration)
and the forget set's confidence lowered; and the issue's own command, through the CLI."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import pytest
import torch

import unlearnkit as uk

COLOURS = {"apple": (150, 100, 100), "leaf": (100, 150, 100), "sky": (100, 100, 150)}

# The folder recipe (SGD lr 0.05) leaves vit-tiny at chance on this folder at 8 px (RA 35 after
# 10 epochs): the test would pass on a model that learnt nothing, so the ViTs get an lr they
# train under (and LTU, by its rule, η and α relative to it: docs/ltu.md "Decisions").
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "torchvision-resnet18": ("torchvision:resnet18", {"epochs": 10}),
    "resnet18": ("resnet18", {"epochs": 10}),
    "vit-tiny": ("vit-tiny", {"epochs": 30, "lr": 0.01}),
    # at 8 px and 30 epochs a sharp ViT, which without the curvature bound one iteration took to
    # RA 34 (docs/ltu.md); at 16 px the bound does not bind on it (measured at 15 and 30 epochs)
    "vit-tiny-lr-0.002": ("vit-tiny", {"epochs": 15, "lr": 0.002}),
}
# In the default run: torchvision-resnet18, resnet18 and vit-tiny-lr-0.002 (about 8, 22 and 31 s on
# one thread); the other ViT cases are slow.
# Measured at 16 px (issue #24), not met at LTU's defaults: kept as strict expected failures. At the
# length rule's T = 1 the ResNets' forget confidence moves by less than 2e-4, either way by seed.
CONFIDENCE_RISES = {
    "torchvision-resnet18": pytest.mark.xfail(strict=True, reason="T = 1: the forget confidence rises, 0.99987 -> 0.9999998"),
    "resnet18": pytest.mark.xfail(strict=True, reason="T = 1: the forget confidence rises, 0.9999980 -> 0.9999991"),
}

def _photos(root: Path, n_train: int = 80, n_test: int = 20, size: int = 16) -> Path:
    """Noisy one-colour PNGs, one colour per class (n_train 40, n_test 12, size 8: docs/your-data.md's toy folder)."""
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


def _confidence(model: torch.nn.Module, data: Any) -> float:
    """Mean probability of the true class."""
    with torch.no_grad():
        return torch.softmax(model.eval()(data.x), 1).gather(1, data.y[:, None]).mean().item()


class Outcome(NamedTuple):
    """Retain and test accuracy and the forget set's confidence, before and after LTU."""

    before: dict[str, float]
    after: dict[str, float]
    confidence_before: float
    confidence_after: float


@functools.lru_cache(maxsize=1)
def _original(root: Path, case: str) -> tuple[torch.nn.Module, Any]:
    """The case's model trained on the folder, and its task (the recipe it was trained with)."""
    model_name, recipe = CASES[case]
    torch.manual_seed(0)
    task = uk.make_task(f"folder:{root}", forget="random:0.1", retain_access=0.3, seed=0, data_dir=root.parent / "cache")
    task.recipe = uk.TrainConfig(**{**uk.unstructure_config(task.recipe), **recipe})
    return uk.train_model(uk.build_model(model_name, task, seed=0), task.train, recipe=task.recipe, seed=0), task


@functools.lru_cache(maxsize=None)
def _ltu(root: Path, case: str, iterations: int) -> Outcome:
    """LTU at its defaults (`iterations` 0: the length rule's T) on the case's original."""
    model, task = _original(root, case)
    before = uk.evaluate(model, task, attack=None)
    assert before["RA"] >= 95, before  # an original that learnt the folder
    ltu = uk.get_unlearner("ltu", {"iterations": iterations})
    new = ltu.unlearn(model, task.view(ltu.reads, who="ltu"), seed=0)
    return Outcome(before, uk.evaluate(new, task, attack=None), _confidence(model, task.forget), _confidence(new, task.forget))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder, written once for the module; the models trained on it are freed after."""
    yield _photos(tmp_path_factory.mktemp("folder") / "photos")
    _original.cache_clear()
    _ltu.cache_clear()


@pytest.mark.parametrize("case, iterations", [
    ("torchvision-resnet18", 0),
    ("resnet18", 0),  # before the MI bank was fit on batch-statistics logits: RA 100 -> 33.0, TA 100 -> 33.3
    pytest.param("vit-tiny", 0, marks=pytest.mark.slow),
    pytest.param("vit-tiny", 40, marks=pytest.mark.slow),
    ("vit-tiny-lr-0.002", 0),
])
def test_ltu_defaults_keep_retain_and_test_accuracy(photos, case, iterations):
    before, after, _, _ = _ltu(photos, case, iterations)
    assert abs(after["RA"] - before["RA"]) <= 5 and abs(after["TA"] - before["TA"]) <= 5, (before, after)


@pytest.mark.parametrize("case", [
    pytest.param("torchvision-resnet18", marks=CONFIDENCE_RISES["torchvision-resnet18"]),
    pytest.param("resnet18", marks=CONFIDENCE_RISES["resnet18"]),
    pytest.param("vit-tiny", marks=pytest.mark.slow),
    "vit-tiny-lr-0.002",
])
def test_ltu_defaults_lower_the_forget_confidence(photos, case):
    outcome = _ltu(photos, case, 0)
    assert outcome.confidence_after < outcome.confidence_before, outcome


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="at 16 px 40 iterations lower it by 0.0012 only, 0.99996 -> 0.99878 (RA, TA 100)")
def test_ltu_run_longer_forgets_on_the_vit(photos):
    """The rule's T = 2 barely moves the confidence; 40 iterations lowered it by 0.03 at 8 px (docs/ltu.md)."""
    outcome = _ltu(photos, "vit-tiny", 40)
    assert outcome.confidence_after < outcome.confidence_before - 0.01, outcome


def test_the_issue_s_command_on_the_doc_s_toy_folder_ends_with_a_report(tmp_path, monkeypatch, capfd):
    """Issue #24's failing run: docs/your-data.md's toy folder (120 images of 8 px), a torchvision
    ResNet-18 at the folder recipe, LTU forgetting 4 ids, the default attack (before: a NaN traceback)."""
    from unlearnkit.cli.commands import main
    from unlearnkit.data.tasks import _load_bundle

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    _load_bundle.cache_clear()
    _photos(Path("photos"), n_train=40, n_test=12, size=8)
    assert main(["train", "--dataset", "folder:photos", "--model", "torchvision:resnet18", "--out", "original.pt",
                 "--quiet"]) == 0
    ids = ["train/apple/apple-03.png", "train/leaf/leaf-11.png", "train/sky/sky-27.png", "train/sky/sky-30.png"]
    Path("request-1.txt").write_text("\n".join(ids) + "\n")
    assert main(["unlearn", "--checkpoint", "original.pt", "--method", "ltu", "--forget", "ids:request-1.txt",
                 "--out", "request-1/model.pt", "--quiet"]) == 0
    assert "Traceback" not in capfd.readouterr().err
    report = json.loads(Path("request-1/report.json").read_text())
    before, after = report["before"], report["after"]
    assert report["method"]["name"] == "ltu" and report["request"]["count"] == 4 and Path("request-1/report.md").is_file()
    assert 0 <= after["mia"]["AUC"] <= 100  # the default attack ran on the unlearned model
    for key in ("retain_accuracy", "test_accuracy"):  # before the fix: RA 100 -> 34.6, TA 94.4 -> 33.3
        assert abs(after[key] - before[key]) <= 5, (before, after)
