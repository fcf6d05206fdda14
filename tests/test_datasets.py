"""The built-in datasets: torchvision's real parsers on tiny files in each dataset's own format,
Tiny-ImageNet from a tiny folder, the MNIST-1D cache, and the refusals (missing, NaN, broken)."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.data import datasets as ukdata
from unlearnkit.data.tasks import _load_bundle

# torchvision 0.29 deprecates its image codecs (Tiny-ImageNet reads and these tests write with them)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Every test reads and writes datasets in its own folder, never in the user's home."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv(ukdata.DATA_DIR_ENV, str(path))
    return path


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the way it does on a machine without one."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


@pytest.fixture
def trust_files(monkeypatch):
    """torchvision checks the md5 of the real downloads; our tiny files cannot match them, so the
    checksum checks (and only those) report success. Parsing stays torchvision's own."""
    from torchvision.datasets import CIFAR10, SVHN, cifar

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)  # CIFAR100 inherits it
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)
    # CIFAR's `_load_meta` checks batches.meta through the module-level helper
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)


def _normalized(raw_chw: np.ndarray, stats) -> torch.Tensor:
    mean, std = (torch.tensor(s)[:, None, None] for s in stats)
    return (torch.from_numpy(raw_chw).float() / 255 - mean) / std


# -- CIFAR ----------------------------------------------------------------------------------


def _dump(path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def write_cifar10(root, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """The `cifar-10-batches-py` layout: five train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = [], []
    for b in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "data": data, "labels": y})
        rows.append(data)
        labels += y
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = [int(v) for v in rng.integers(0, 10, n_test)]
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": test, "labels": test_y})
    _dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
    return {"x": np.vstack(rows), "y": np.array(labels), "x_test": test, "y_test": np.array(test_y)}


def write_cifar100(root, n_train: int = 20, n_test: int = 5, seed: int = 1) -> dict[str, np.ndarray]:
    """The `cifar-100-python` layout: train, test and meta with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _dump(folder / split, {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]})
        out["x" if split == "train" else "x_test"], out["y" if split == "train" else "y_test"] = data, np.array(fine)
    _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"k{i}" for i in range(20)]})
    return out


def _cifar_chw(rows: np.ndarray) -> np.ndarray:
    # a CIFAR row is the red plane, then green, then blue, each 32x32 row-major
    return rows.reshape(-1, 3, 32, 32)


@pytest.mark.parametrize("name, write, stats, num_classes", [
    ("cifar10", write_cifar10, CIFAR10_STATS, 10),
    ("cifar100", write_cifar100, CIFAR100_STATS, 100),
])
def test_cifar_parses_the_real_format(name, write, stats, num_classes, data_dir, trust_files, offline):
    raw = write(data_dir)
    bundle, _ = _load_bundle(name, "{}", str(data_dir), False)
    assert bundle.num_classes == num_classes and bundle.input_shape == (3, 32, 32)
    assert bundle.train.x.shape == (len(raw["y"]), 3, 32, 32) and bundle.train.x.dtype == torch.float32
    assert torch.equal(bundle.train.y, torch.from_numpy(raw["y"]).long())
    assert torch.equal(bundle.test.y, torch.from_numpy(raw["y_test"]).long())
    torch.testing.assert_close(bundle.train.x, _normalized(_cifar_chw(raw["x"]), stats))
    torch.testing.assert_close(bundle.test.x, _normalized(_cifar_chw(raw["x_test"]), stats))
    assert bundle.augment is not None and bundle.recipe.epochs == 182  # SalUn's CIFAR recipe
    assert not offline


def test_cifar_without_normalisation_is_pixels_in_unit_range(data_dir, trust_files):
    raw = write_cifar10(data_dir)
    task = uk.make_task("cifar10", forget="random:0.2", seed=0, data_dir=data_dir, dataset_config={"normalize": False})
    expected = torch.from_numpy(_cifar_chw(raw["x"])).float() / 255
    torch.testing.assert_close(task.train.x, expected[task.train.indices])
    assert task.train.x.min() >= 0 and task.train.x.max() <= 1


@pytest.mark.parametrize("name, write", [("cifar10", write_cifar10), ("cifar100", write_cifar100)])
def test_make_task_on_cifar_end_to_end(name, write, data_dir, trust_files):
    raw = write(data_dir)
    task = uk.make_task(name, forget="random:0.25", retain_access=0.5, seed=3, data_dir=data_dir)
    n = len(raw["y"])
    assert sorted(torch.cat([task.train.indices, task.val.indices]).tolist()) == list(range(n))
    assert len(task.forget) == round(0.25 * len(task.train)) and len(task.test) == len(raw["y_test"])
    assert torch.equal(task.forget.y, torch.from_numpy(raw["y"])[task.forget.indices].long())
    model = uk.build_model("mlp", task)  # the task's shapes build a model that runs on its inputs
    assert model(task.forget.x).shape == (len(task.forget), task.num_classes)


# -- SVHN -----------------------------------------------------------------------------------


def write_svhn(root, n_train: int = 12, n_test: int = 5, seed: int = 2) -> dict[str, np.ndarray]:
    """`train_32x32.mat` / `test_32x32.mat`: X is (32, 32, 3, N), y is (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10  # make sure the digit 0 is there
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def test_svhn_parses_the_real_format_and_maps_10_to_0(data_dir, trust_files, offline):
    raw = write_svhn(data_dir)
    bundle, _ = _load_bundle("svhn", "{}", str(data_dir), False)
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32)
    for split, got in (("train", bundle.train), ("test", bundle.test)):
        x, y = raw[split]
        expected_y = torch.from_numpy(y[:, 0].astype(np.int64))
        expected_y[expected_y == 10] = 0
        assert torch.equal(got.y, expected_y) and int(got.y[0]) == 0 and got.y.max() <= 9
        # pixel (h, w) of channel c of sample i is X[h, w, c, i]
        torch.testing.assert_close(got.x, _normalized(x.transpose(3, 2, 0, 1).copy(), SVHN_STATS))
    assert bundle.augment is ukdata._crop  # digits are not flipped
    assert not offline


def test_make_task_on_svhn_end_to_end(data_dir, trust_files):
    write_svhn(data_dir)
    task = uk.make_task("svhn", forget="class:0", seed=0, data_dir=data_dir)
    assert len(task.forget) > 0 and (task.forget.y == 0).all() and (task.retain_full.y != 0).all()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_missing_torchvision_dataset_names_the_folder_and_suggests_download(name, data_dir, offline):
    with pytest.raises(uk.UsageError) as info:
        uk.make_task(name, data_dir=data_dir)
    message = str(info.value)
    assert repr(name) in message and str(data_dir) in message and "--download" in message
    assert not offline  # without `download` nothing reaches for the network
    assert list(data_dir.iterdir()) == []


def test_failed_download_is_one_usage_error(data_dir, offline):
    with pytest.raises(uk.UsageError, match="download into .* failed"):
        uk.make_task("cifar10", data_dir=data_dir, download=True)
    assert offline  # it did try


# -- Tiny-ImageNet --------------------------------------------------------------------------


def write_tiny_imagenet(root, wnids=("n01443537", "n01629819", "n01641577"), per_class: int = 2) -> dict:
    """A tiny `tiny-imagenet-200` folder: wnids.txt, train/<wnid>/images, val/images + annotations."""
    from torchvision.io import write_jpeg, write_png

    g = torch.Generator().manual_seed(0)
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train = {}
    for label, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")  # real folders carry this too
        for i in range(per_class):
            image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g)
            path = folder / f"{wnid}_{i}.png"
            write_png(image, str(path))
            train[path.name] = (image, label)
    gray = torch.randint(0, 256, (1, 64, 64), dtype=torch.uint8, generator=g)  # Tiny-ImageNet has some
    write_png(gray, str(base / "val" / "images" / "val_0.png"))
    smooth = torch.full((3, 64, 64), 100, dtype=torch.uint8)
    smooth[0] = 200
    write_jpeg(smooth, str(base / "val" / "images" / "val_1.JPEG"), quality=95)
    (base / "val" / "val_annotations.txt").write_text(
        f"val_0.png\t{wnids[2]}\t0\t0\t63\t63\nval_1.JPEG\t{wnids[0]}\t3\t4\t50\t60\n"
    )
    return {"train": train, "gray": gray, "smooth": smooth}


def test_tiny_imagenet_reads_the_folder(data_dir):
    raw = write_tiny_imagenet(data_dir)
    bundle, _ = _load_bundle("tiny-imagenet", '{"normalize": false}', str(data_dir), False)
    assert bundle.num_classes == 3 and bundle.input_shape == (3, 64, 64)
    assert bundle.train.x.shape == (6, 3, 64, 64) and bundle.test.x.shape == (2, 3, 64, 64)
    names = sorted(raw["train"])  # files are read in sorted order
    for i, name in enumerate(names):
        image, label = raw["train"][name]
        assert int(bundle.train.y[i]) == label
        torch.testing.assert_close(bundle.train.x[i], image.float() / 255)
    # sorted val: val_0.png (grayscale, class 2) then val_1.JPEG (class 0)
    assert bundle.test.y.tolist() == [2, 0]
    torch.testing.assert_close(bundle.test.x[0], raw["gray"].expand(3, -1, -1).float() / 255)
    torch.testing.assert_close(bundle.test.x[1], raw["smooth"].float() / 255, atol=3 / 255, rtol=0)


def test_tiny_imagenet_normalises_and_makes_a_task(data_dir):
    raw = write_tiny_imagenet(data_dir, per_class=4)
    task = uk.make_task("tiny-imagenet", forget="class:1", seed=0, data_dir=data_dir)
    assert (task.forget.y == 1).all() and task.num_classes == 3
    first = min(raw["train"])  # source index 0
    mean, std = torch.tensor((0.480, 0.448, 0.398))[:, None, None], torch.tensor((0.277, 0.269, 0.282))[:, None, None]
    position = (torch.cat([task.train.indices, task.val.indices]) == 0).nonzero()[0, 0]
    x = torch.cat([task.train.x, task.val.x])[position]
    torch.testing.assert_close(x, (raw["train"][first][0].float() / 255 - mean) / std)


def test_tiny_imagenet_missing_folder_is_a_usage_error(data_dir):
    with pytest.raises(uk.UsageError, match="wnids.txt") as info:
        uk.make_task("tiny-imagenet", data_dir=data_dir)
    assert str(data_dir) in str(info.value)


@pytest.mark.parametrize("breakage, message", [
    ("unknown-class", "'n99999999' is not in wnids.txt"),
    ("wrong-size", "expected (64, 64)"),
    ("not-an-image", "cannot decode"),
    ("no-annotations", "val_annotations.txt not found"),
    ("no-train-images", "no train images"),
])
def test_broken_tiny_imagenet_is_a_usage_error(breakage, message, data_dir):
    from torchvision.io import write_png

    write_tiny_imagenet(data_dir)
    base = data_dir / "tiny-imagenet-200"
    if breakage == "unknown-class":
        with open(base / "val" / "val_annotations.txt", "a") as fh:
            fh.write("val_0.png\tn99999999\t0\t0\t1\t1\n")
    elif breakage == "wrong-size":
        write_png(torch.zeros(3, 32, 32, dtype=torch.uint8), str(base / "val" / "images" / "val_0.png"))
    elif breakage == "not-an-image":
        (base / "val" / "images" / "val_1.JPEG").write_bytes(b"not a jpeg at all")
    elif breakage == "no-annotations":
        (base / "val" / "val_annotations.txt").unlink()
    else:
        for image in base.glob("train/*/images/*"):
            image.unlink()
    with pytest.raises(uk.UsageError) as info:
        _load_bundle("tiny-imagenet", "{}", str(data_dir), False)
    assert message in str(info.value)


# -- MNIST-1D -------------------------------------------------------------------------------


def test_mnist1d_is_generated_once_and_then_read_from_its_cache(data_dir, monkeypatch):
    first = uk.make_task("mnist1d", seed=0, dataset_config={"num_samples": 1000})
    cache = data_dir / "mnist1d-n1000-s42.npz"
    assert cache.is_file() and [p.name for p in data_dir.iterdir()] == [cache.name]  # no temp file left
    assert first.input_shape == (1, 40) and first.num_classes == 10
    assert len(first.train) + len(first.val) == 800 and len(first.test) == 200

    import mnist1d.data

    def no_generation(*args, **kwargs):
        raise AssertionError("mnist1d was generated again instead of read from the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    _load_bundle.cache_clear()  # make the next call go to the data folder
    second = uk.make_task("mnist1d", seed=0, dataset_config={"num_samples": 1000})
    for part in ("train", "val", "test", "forget", "retain"):
        assert torch.equal(getattr(first, part).x, getattr(second, part).x)
        assert torch.equal(getattr(first, part).y, getattr(second, part).y)


def test_unreadable_mnist1d_cache_is_regenerated(data_dir):
    cache = data_dir / "mnist1d-n1000-s42.npz"
    cache.write_bytes(b"PK\x03\x04 half a zip")
    task = uk.make_task("mnist1d", dataset_config={"num_samples": 1000})
    assert len(task.test) == 200
    with np.load(cache) as arrays:  # the cache was rewritten with real arrays
        assert arrays["x"].shape == (800, 40)


# -- synthetic and the finiteness check -----------------------------------------------------


def test_synthetic_is_instant_and_seeded():
    a, b = (uk.make_task("synthetic", dataset_config={"seed": 5, "num_samples": 100}) for _ in range(2))
    c = uk.make_task("synthetic", dataset_config={"seed": 6, "num_samples": 100})
    assert a.input_shape == (16,) and a.num_classes == 4 and len(a.train) + len(a.val) == 80 and len(a.test) == 20
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)


@pytest.mark.parametrize("split, value", [("train", float("nan")), ("test", float("inf"))])
def test_non_finite_dataset_is_refused(split, value, register_component):
    def broken(config, data_dir, download=False):
        bundle = ukdata.synthetic(config, data_dir, download)
        getattr(bundle, split).x[7, 3] = value
        return bundle

    register_component("dataset", "broken-synthetic", broken, ukdata.SyntheticConfig)
    with pytest.raises(uk.UsageError) as info:
        uk.make_task("broken-synthetic")
    assert "'broken-synthetic'" in str(info.value) and "NaN or infinite" in str(info.value)
    assert "first at 7" in str(info.value)


def test_bad_dataset_options_name_their_path():
    with pytest.raises(uk.ConfigError, match=r"\$\.dataset\.synthetic\.num_samples: must be > 0, got 0"):
        uk.make_task("synthetic", dataset_config={"num_samples": 0})
    with pytest.raises(uk.ConfigError, match=r"\$\.dataset\.cifar10: unknown key\(s\) 'num_samples'"):
        uk.make_task("cifar10", dataset_config={"num_samples": 10})


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(uk.UnknownComponentError, match="did you mean 'cifar10'"):
        uk.make_task("cifar-10")
