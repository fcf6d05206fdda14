"""Models from elsewhere: `torchvision:NAME` architectures and `unlearnkit import` of a plain
state dict, with the refusals a user can act on."""

from __future__ import annotations

import pytest
import torch
import torchvision

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.data.tasks import _load_bundle, make_task
from unlearnkit.engine.checkpoint import load_checkpoint, load_model
from unlearnkit.testing.files import tiny_image_folder as make_folder


def shape(input_shape, num_classes=3):
    return type("Task", (), {"input_shape": input_shape, "num_classes": num_classes})


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_architectures_get_a_head_sized_to_the_classes(arch):
    model = uk.build_model(f"torchvision:{arch}", shape((3, 32, 32), 7), seed=0)
    assert isinstance(model, torchvision.models.get_model_builder(arch)(weights=None).__class__)
    assert uk.models.head(model).out_features == 7
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    again = uk.build_model(f"torchvision:{arch}", shape((3, 32, 32), 7), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))  # seeded


@pytest.mark.parametrize("name, input_shape, message", [
    ("torchvision:fasterrcnn_resnet50_fpn", (3, 32, 32), "not an image classifier; use a classification architecture such as resnet18"),
    ("torchvision:resnet81", (3, 32, 32), "did you mean 'resnet18'"),
    ("torchvision:squeezenet1_1", (3, 32, 32), "does not end in an nn.Linear head"),
    ("torchvision:resnet18", (1, 40), "1-D data such as mnist1d needs a 1-D model"),
    ("torchvision:resnet18", (1, 8, 8), "takes RGB images (3 channels), but the data has 1"),
    ("torchvision:alexnet", (3, 8, 8), "cannot take images of shape (3, 8, 8)"),
    ("torchvision:", (3, 8, 8), "expected torchvision:ARCH"),
    ("torchvision", (3, 8, 8), "needs an architecture: torchvision:NAME"),
])
def test_unusable_torchvision_models_are_refused_with_a_way_out(name, input_shape, message):
    with pytest.raises(uk.UsageError) as info:
        uk.build_model(name, shape(input_shape))
    assert message in str(info.value) and "\n" not in str(info.value)


# -- unlearnkit import ------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(tmp_path / "data"))
    _load_bundle.cache_clear()
    return make_folder(tmp_path / "photos", classes=("cat", "dog", "owl"))


def _resnet(num_classes=3):
    torch.manual_seed(1)
    return torchvision.models.get_model("resnet18", weights=None, num_classes=num_classes)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_wraps_a_state_dict_that_unlearn_and_evaluate_then_use(photos, tmp_path, capsys):
    mine = _resnet()
    torch.save(mine.state_dict(), tmp_path / "mine.pt")
    code, out, err = run(["import", "--model", "torchvision:resnet18", "--weights", tmp_path / "mine.pt",
                          "--dataset", f"folder:{photos}", "--out", tmp_path / "imported.pt", "--quiet"], capsys)
    assert code == 0, err
    model, meta = load_model(tmp_path / "imported.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), mine.state_dict().values()))
    assert meta["kind"] == "imported" and meta["class_names"] == ["cat", "dog", "owl"] and meta["val_from"] == "test"
    assert len(meta["weights"]["sha256"]) == 64 and meta["dataset_fingerprint"]
    # trained elsewhere on all of train/: unseen data (val) comes out of test/, every train image is forgettable
    task = make_task(f"folder:{photos}", seed=0, val_from="test")
    assert len(task.train) == 15 and len(task.val) + len(task.test) == 6
    (tmp_path / "ids.txt").write_text("train/owl/owl-4.png\n")
    code, _, err = run(["unlearn", "--checkpoint", tmp_path / "imported.pt", "--method", "example-head-reset", "--forget",
                        f"ids:{tmp_path / 'ids.txt'}", "--attack", "none", "--out", tmp_path / "r1" / "model.pt", "--quiet"], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "r1" / "model.pt")[1]["forget_set"]["count"] == 1


def test_import_unwraps_nested_and_data_parallel_state_dicts(photos, tmp_path, capsys):
    mine = _resnet()
    torch.save({"epoch": torch.tensor(3), "state_dict": {f"module.{k}": v for k, v in mine.state_dict().items()}}, tmp_path / "ddp.pt")
    code, _, err = run(["import", "--model", "torchvision:resnet18", "--weights", tmp_path / "ddp.pt",
                        "--dataset", f"folder:{photos}", "--out", tmp_path / "imported.pt", "--quiet"], capsys)
    assert code == 0, err
    state, _ = load_checkpoint(tmp_path / "imported.pt")
    assert torch.equal(state["fc.weight"], mine.state_dict()["fc.weight"])


def _save(obj):
    return lambda p: torch.save(obj() if callable(obj) else obj, p)


BAD_IMPORT = {
    "head of another size": (_save(lambda: _resnet(10).state_dict()), "torchvision:resnet18",
                             ["does not fit torchvision:resnet18", "wrong shape fc.weight (10, 512) (model: (3, 512))"]),
    "another architecture": (_save(lambda: _resnet().state_dict()), "torchvision:resnet34", ["does not fit torchvision:resnet34", "missing layer1.2."]),
    "extra keys": (_save(lambda: {**_resnet().state_dict(), "aux.weight": torch.zeros(2)}), "torchvision:resnet18", ["unexpected aux.weight"]),
    "a pickled model object": (_save(lambda: _resnet()), "torchvision:resnet18", ["refused", "save the model's state_dict()"]),
    "not a state dict": (_save([torch.zeros(3)]), "torchvision:resnet18", ["is not a state dict"]),
    "nan weights": (_save(lambda: {**_resnet().state_dict(), "fc.bias": torch.full((3,), float("nan"))}), "torchvision:resnet18",
                    ["fc.bias holds NaN or infinite values"]),
    "not a torch file": (lambda p: p.write_text("weights"), "torchvision:resnet18", ["w.pt", "not a torch checkpoint"]),
    "missing file": (lambda p: None, "torchvision:resnet18", ["w.pt", "not found"]),
    "no model": (_save(lambda: _resnet().state_dict()), None, ["--model is required"]),
    "1-D data": (_save(lambda: _resnet().state_dict()), "torchvision:resnet18", ["1-D data"]),
}


@pytest.mark.parametrize("case", list(BAD_IMPORT))
def test_bad_imports_exit_2_with_one_line_and_write_nothing(case, photos, tmp_path, capsys):
    make, model, needles = BAD_IMPORT[case]
    make(tmp_path / "w.pt")
    before = (tmp_path / "w.pt").read_bytes() if (tmp_path / "w.pt").exists() else None
    dataset = "mnist1d" if case == "1-D data" else f"folder:{photos}"
    argv = ["import", "--weights", tmp_path / "w.pt", "--dataset", dataset, "--out", tmp_path / "out.pt", "--quiet"]
    code, out, err = run(argv + (["--model", model] if model else []), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("unlearnkit: error: "), err
    assert all(n in lines[0] for n in needles), lines[0]
    assert not (tmp_path / "out.pt").exists() and out == ""
    assert ((tmp_path / "w.pt").read_bytes() if before is not None else None) == before


def test_import_refuses_an_unlearnkit_checkpoint_and_its_own_input(photos, tmp_path, capsys):
    torch.save(_resnet().state_dict(), tmp_path / "w.pt")
    base = ["import", "--model", "torchvision:resnet18", "--dataset", f"folder:{photos}", "--quiet"]
    assert run(base + ["--weights", tmp_path / "w.pt", "--out", tmp_path / "a.pt"], capsys)[0] == 0
    code, _, err = run(base + ["--weights", tmp_path / "a.pt", "--out", tmp_path / "b.pt"], capsys)
    assert code == 2 and "already an unlearnkit checkpoint" in err and not (tmp_path / "b.pt").exists()
    code, _, err = run(base + ["--weights", tmp_path / "w.pt", "--out", tmp_path / "w.pt", "--force"], capsys)
    assert code == 2 and "is the input checkpoint" in err
