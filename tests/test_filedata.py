"""Datasets from the user's files (`npz:PATH`, `folder:DIR`) and forgetting by id (`ids:FILE`):
what they load, the decoded-once cache, the content hash, and one clear error per bad input."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.cli.commands import main
from unlearnkit.data import files as filedata
from unlearnkit.data.tasks import _load_bundle, ids_digest, make_task
from unlearnkit.testing.files import tiny_image_folder as make_folder
from unlearnkit.testing.files import tiny_npz as write_npz
from unlearnkit.testing.files import write_png


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    path = tmp_path / "data"
    monkeypatch.setenv("UNLEARNKIT_DATA_DIR", str(path))
    _load_bundle.cache_clear()
    return path


# -- npz --------------------------------------------------------------------------------------


def test_npz_gives_arrays_ids_class_names_and_a_content_hash(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    task = make_task(f"npz:{path}", forget="random:0.1", seed=0)
    assert task.num_classes == 3 and task.input_shape == (6,) and task.class_names == ("a", "b", "c")
    assert len(task.train) + len(task.val) == 60 and len(task.test) == 15
    with np.load(path) as arrays:
        rows = task.train.indices
        assert torch.equal(task.train.x, torch.from_numpy(arrays["x_train"][rows.numpy()]))
        assert task.ids_of(task.train) == [f"person-{i:04d}" for i in rows.tolist()]
    assert task.describe()["dataset_fingerprint"] == task.fingerprint and len(task.fingerprint) == 64
    again = make_task(f"npz:{path}", forget="random:0.1", seed=0)
    assert again.fingerprint == task.fingerprint and again.split_hashes() == task.split_hashes()
    write_npz(path, x_test=np.zeros((15, 6), np.float32))  # other content, same positions
    changed = make_task(f"npz:{path}", forget="random:0.1", seed=0)
    assert changed.fingerprint != task.fingerprint and changed.split_hashes()["train"] != task.split_hashes()["train"]


def test_npz_without_ids_names_samples_by_row_and_classes_by_number(tmp_path):
    path = write_npz(tmp_path / "d.npz", ids=False, names=False)
    task = make_task(f"npz:{path}", seed=0)
    assert task.class_names == ("0", "1", "2") and task.ids_of(task.forget) == [str(i) for i in task.forget.indices.tolist()]


def test_npz_normalises_by_mean_and_std(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    plain = make_task(f"npz:{path}", seed=0)
    scaled = make_task(f"npz:{path}", seed=0, dataset_config={"mean": [1.0], "std": [2.0]})
    torch.testing.assert_close(scaled.test.x, (plain.test.x - 1.0) / 2.0)
    assert scaled.dataset_config["mean"] == [1.0] and "path" not in scaled.dataset_config  # the path is in the name


# -- folder -----------------------------------------------------------------------------------


def test_folder_reads_imagefolder_layout_ids_are_relative_paths(tmp_path):
    root = make_folder(tmp_path / "photos")
    task = make_task(f"folder:{root}", forget="random:0.2", seed=0)
    assert task.class_names == ("cat", "dog") and task.input_shape == (3, 4, 4) and task.num_classes == 2
    assert len(task.train) + len(task.val) == 10 and len(task.test) == 4
    ids = task.ids_of(task.train)
    for i, sample_id in enumerate(ids):
        name, index = sample_id.split("/")[1], int(sample_id.rsplit("-", 1)[1][:-4])
        assert sample_id == f"train/{name}/{name}-{index}.png" and int(task.train.y[i]) == ("cat", "dog").index(name)
        assert torch.allclose(task.train.x[i], torch.full((3, 4, 4), (40 * int(task.train.y[i]) + index) / 255))


def test_folder_is_decoded_once_then_read_from_the_cache(tmp_path, data_dir, monkeypatch):
    root = make_folder(tmp_path / "photos")
    decoded = []
    real = filedata._decode_one
    monkeypatch.setattr(filedata, "_decode_one", lambda path, *a: decoded.append(path) or real(path, *a))
    first = make_task(f"folder:{root}", seed=0)
    assert len(decoded) == 14 and len(list((data_dir / "folders").glob("*.npz"))) == 1
    _load_bundle.cache_clear()
    second = make_task(f"folder:{root}", seed=0)
    assert len(decoded) == 14 and torch.equal(first.train.x, second.train.x) and first.fingerprint == second.fingerprint
    write_png(root / "train" / "cat" / "cat-0.png", value=250)  # a changed file: decoded again, another hash
    os.utime(root / "train" / "cat" / "cat-0.png", ns=(1, 1))
    third = make_task(f"folder:{root}", seed=0)
    assert len(decoded) == 28 and third.fingerprint != first.fingerprint


def test_a_copied_folder_has_the_same_content_hash(tmp_path):
    root = make_folder(tmp_path / "photos")
    copy = shutil.copytree(root, tmp_path / "copy", copy_function=shutil.copy)  # new modification times
    assert make_task(f"folder:{root}", seed=0).fingerprint == make_task(f"folder:{copy}", seed=0).fingerprint


def test_folder_resizes_reads_gray_and_normalises_on_request(tmp_path):
    root = make_folder(tmp_path / "photos")
    write_png(root / "train" / "dog" / "big.png", size=(9, 7), value=100)
    task = make_task(f"folder:{root}", seed=0, dataset_config={"size": 8, "mode": "gray", "mean": [0.5], "std": [0.25]})
    assert task.input_shape == (1, 8, 8)
    x = torch.cat([task.train.x, task.val.x])
    assert x.min() >= (0 - 0.5) / 0.25 and x.max() <= (1 - 0.5) / 0.25


# -- bad input: one line naming the file or value, exit 2, nothing written --------------------


def _npz_case(**arrays):
    return lambda p: f"npz:{write_npz(p / 'd.npz', **arrays)}"


def _folder_case(change):
    def make(p):
        root = make_folder(p / "photos")
        change(root)
        return f"folder:{root}"

    return make


def _garbage(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG not really")


BAD_DATA = {
    "npz missing file": (lambda p: f"npz:{p / 'nope.npz'}", ["nope.npz", "not found"]),
    "npz not an npz": (lambda p: (p / "d.npz").write_text("hello") and f"npz:{p / 'd.npz'}", ["d.npz", "unreadable"]),
    "npz missing key": (_npz_case(y_test=None), ["lacks y_test"]),
    "npz lengths differ": (_npz_case(y_train=np.arange(59) % 3), ["y_train has 59 labels but x_train has 60"]),
    "npz ids length": (_npz_case(ids_train=np.array(["a", "b"])), ["ids_train has 2 ids but x_train has 60"]),
    "npz nan": (_npz_case(x_train=np.full((60, 6), np.nan, np.float32)), ["x_train holds NaN or infinite", "first at row 0"]),
    "npz inf in test": (_npz_case(x_test=np.where(np.eye(15, 6) > 0, np.inf, 0).astype(np.float32)), ["x_test holds NaN or infinite"]),
    "npz duplicate ids": (_npz_case(ids_train=np.array([f"p{i % 59}" for i in range(60)])), ["id 'p0' names more than one"]),
    "npz class only in test": (_npz_case(y_train=np.arange(60) % 2), ["class 'c' appears in y_test but never in y_train"]),
    "npz float labels": (_npz_case(y_train=(np.arange(60) % 3).astype(float)), ["y_train must be a 1-D array of integer class labels"]),
    "npz negative label": (_npz_case(y_test=np.arange(15) % 3 - 1), ["y_test holds the negative label -1"]),
    "npz object ids": (lambda p: _object_npz(p), ["ids_train holds Python objects"]),
    "npz test shape": (_npz_case(x_test=np.zeros((15, 5), np.float32)), ["x_test samples have shape (5,)"]),
    "folder missing": (lambda p: f"folder:{p / 'nowhere'}", ["nowhere", "not found"]),
    "folder no test": (_folder_case(lambda r: shutil.rmtree(r / "test")), ["has no test/ folder"]),
    "folder unreadable image": (_folder_case(lambda r: _garbage(r / "train" / "dog" / "broken.png")), ["cannot read image train/dog/broken.png"]),
    "folder wrongly sized": (_folder_case(lambda r: write_png(r / "train" / "dog" / "wide.png", size=(5, 4))),
                             ["train/dog/wide.png is 5×4 pixels", "size = N"]),
    "folder class only in test": (_folder_case(lambda r: write_png(r / "test" / "zebra" / "z.png")), ["class 'zebra' appears in test/ but not in train/"]),
    "folder stray file": (_folder_case(lambda r: (r / "train" / "cat" / "notes.txt").write_text("x")), ["train/cat/notes.txt is not an image"]),
    "folder empty class": (_folder_case(lambda r: (r / "train" / "owl").mkdir()), ["train/owl/ holds no images"]),
    "name takes no value": (lambda p: "mnist1d:foo", ["'mnist1d' takes no value"]),
    "npz without a path": (lambda p: "npz", ["npz needs a file: npz:PATH"]),
}


def _object_npz(p):
    path = p / "d.npz"
    write_npz(path)
    with np.load(path) as arrays:
        data = dict(arrays)
    data["ids_train"] = np.array([f"p{i}" for i in range(60)], dtype=object)
    np.savez(path, **data)  # numpy pickles the object array
    return f"npz:{path}"


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_usage_error_naming_it(case, tmp_path, data_dir):
    make, needles = BAD_DATA[case]
    dataset = make(tmp_path)
    with pytest.raises(uk.UsageError) as info:
        make_task(dataset, seed=0)
    message = str(info.value)
    assert "\n" not in message and all(n in message for n in needles), message


@pytest.mark.parametrize("case", ["npz lengths differ", "npz duplicate ids", "folder wrongly sized", "folder unreadable image"])
def test_bad_data_through_the_cli_exits_2_and_writes_nothing(case, tmp_path, data_dir, capsys):
    make, needles = BAD_DATA[case]
    dataset = make(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    code = main(["train", "--dataset", dataset, "--model", "mlp", "--out", str(tmp_path / "a.pt"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("unlearnkit: error: ") and needles[0] in err[0]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no checkpoint, no cache


def test_the_path_comes_from_the_name_only(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    with pytest.raises(uk.UsageError, match="give the path in the name"):
        make_task("npz", dataset_config={"path": str(path)})
    with pytest.raises(uk.UsageError, match="path comes from the name"):
        make_task(f"npz:{path}", dataset_config={"path": "other.npz"})


# -- forget by id -------------------------------------------------------------------------------


def test_ids_file_forgets_exactly_those_samples_duplicates_folded(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    train_ids = make_task(f"npz:{path}", seed=0).ids_of(make_task(f"npz:{path}", seed=0).train)
    wanted = train_ids[3:8]
    (tmp_path / "ids.txt").write_text("\n".join(wanted + wanted[:2]) + "\n\n  " + wanted[0] + "  \n")
    task = make_task(f"npz:{path}", forget=f"ids:{tmp_path / 'ids.txt'}", seed=0)
    assert sorted(task.ids_of(task.forget)) == sorted(wanted)
    assert task.request.ids == tuple(sorted(wanted)) and task.request.held_out == 0
    assert task.request.digest() == ids_digest(wanted)


def test_ids_in_the_validation_split_are_counted_never_trained_on(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    base = make_task(f"npz:{path}", seed=0)
    val_ids, train_ids = base.ids_of(base.val), base.ids_of(base.train)
    (tmp_path / "ids.txt").write_text("\n".join([val_ids[0], train_ids[0]]))
    task = make_task(f"npz:{path}", forget=f"ids:{tmp_path / 'ids.txt'}", seed=0)
    assert task.ids_of(task.forget) == [train_ids[0]] and task.request.held_out == 1 and task.request.new == 1
    (tmp_path / "val.txt").write_text("\n".join(val_ids[:2]))
    with pytest.raises(uk.UsageError, match="all 2 ids are in the held-out validation split; the model never trained on them"):
        make_task(f"npz:{path}", forget=f"ids:{tmp_path / 'val.txt'}", seed=0)


def test_unknown_ids_are_refused_naming_the_first_few(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    (tmp_path / "ids.txt").write_text("person-0001\nghost-1\nghost-2\nghost-3\nghost-4\n")
    with pytest.raises(uk.UsageError) as info:
        make_task(f"npz:{path}", forget=f"ids:{tmp_path / 'ids.txt'}", seed=0)
    message = str(info.value)
    assert "4 id(s) are not in the dataset's train split: 'ghost-1', 'ghost-2', 'ghost-3' and 1 more" in message
    assert "person-0001" not in message


def test_folder_ids_are_paths_and_numbers_name_rows_elsewhere(tmp_path):
    root = make_folder(tmp_path / "photos")
    base = make_task(f"folder:{root}", seed=0)
    (tmp_path / "ids.txt").write_text(base.ids_of(base.train)[0] + "\n")
    task = make_task(f"folder:{root}", forget=f"ids:{tmp_path / 'ids.txt'}", seed=0)
    assert task.ids_of(task.forget) == base.ids_of(base.train)[:1]
    (tmp_path / "bad.txt").write_text("cat-1.png\n")
    with pytest.raises(uk.UsageError, match="paths relative to the folder, like 'train/cat/cat-0.png'"):
        make_task(f"folder:{root}", forget=f"ids:{tmp_path / 'bad.txt'}", seed=0)
    synthetic = make_task("synthetic", seed=0)
    (tmp_path / "rows.txt").write_text(f"{int(synthetic.train.indices[5])}\n")
    assert make_task("synthetic", forget=f"ids:{tmp_path / 'rows.txt'}", seed=0).forget.indices.tolist() == [int(synthetic.train.indices[5])]


@pytest.mark.parametrize("spec, message", [("ids:", "ids needs a file name"), ("ids:/nonexistent/ids.txt", "not found")])
def test_bad_ids_specs(spec, message):
    with pytest.raises(uk.UsageError, match=message):
        make_task("synthetic", forget=spec, seed=0)


def test_dataset_options_from_the_command_line_are_recorded(tmp_path, capsys):
    root = make_folder(tmp_path / "photos")
    argv = ["train", "--dataset", f"folder:{root}", "--model", "mlp", "--epochs", "1", "--quiet",
            "--dataset-option", "size=2", "--dataset-option", "mode=gray", "--dataset-option", "mean=[0.5]"]
    assert main(argv + ["--out", str(tmp_path / "a.pt")]) == 0
    _, meta = uk.load_checkpoint(tmp_path / "a.pt")
    assert meta["input_shape"] == [1, 2, 2] and meta["class_names"] == ["cat", "dog"]
    assert {k: meta["dataset_config"][k] for k in ("size", "mode", "mean")} == {"size": 2, "mode": "gray", "mean": [0.5]}
    capsys.readouterr()
    for option, needle in (("sise=2", "$.dataset.folder: unknown key(s) 'sise'"), ("size", "malformed option 'size'"),
                           ("size=-2", "$.dataset.folder.size: must be > 0, got -2")):
        code = main(argv[:7] + ["--dataset-option", option, "--out", str(tmp_path / "b.pt")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and needle in err and "\n" not in err, err
    assert not (tmp_path / "b.pt").exists()


class _MismatchedTorchvision:
    """An import finder that fails as a torchvision built for another torch does."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_a_torchvision_that_does_not_match_torch_is_one_line_naming_both_versions(tmp_path, monkeypatch, capsys):
    import importlib.metadata as md
    import sys

    root = make_folder(tmp_path / "images")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_MismatchedTorchvision(), *sys.meta_path])
    assert main(["train", "--dataset", f"folder:{root}", "--model", "mlp", "--epochs", "1",
                 "--out", str(tmp_path / "a.pt"), "--quiet"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"unlearnkit: failed: torchvision {md.version('torchvision')} does not work with torch "
                           f"{md.version('torch')} (operator torchvision::nms does not exist)")
    assert "must match" in line
    with pytest.raises(uk.UnlearnkitError, match="must match"):
        uk.build_model("resnet18", make_task("synthetic", seed=0), seed=0)
