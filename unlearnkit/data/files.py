"""Datasets read from the user's files: `npz:PATH` (arrays) and `folder:DIR` (an image tree).

`npz:PATH` holds arrays `x_train`, `y_train`, `x_test`, `y_test` and optionally `ids_train`
(one string id per training sample; else the row number) and `class_names`.
`folder:DIR` is torchvision's ImageFolder layout, `DIR/train/<class>/<image>` and
`DIR/test/<class>/<image>`; a sample's id is its path relative to DIR (`train/cat/001.png`).
Images are decoded once (PIL, through torchvision) and cached as uint8 arrays under the data
directory, keyed by the folder's listing: every file's relative path, size and modification
time. A dataset's `fingerprint` is the SHA-256 of its content as loaded (arrays, ids, class
names), so a copy of a folder has the fingerprint of the original.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional

import attrs
import numpy as np
import torch

from unlearnkit.core.config import config_class
from unlearnkit.core.errors import UsageError, import_torchvision
from unlearnkit.core.registry import FROM_NAME
from unlearnkit.core.validators import FieldError, one_of, positive
from unlearnkit.data.datasets import ArrayDataset, DatasetBundle, _crop, crop_flip
from unlearnkit.data.recipe import TrainConfig

#: File names a folder dataset decodes (torchvision's ImageFolder extensions); other files are refused.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1
#: The recipe of a model trained on the user's data (override with a `[train]` table or `--epochs`).
FILE_RECIPE = TrainConfig(epochs=30, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
AUGMENTS = {"none": None, "crop": _crop, "crop-flip": crop_flip}

_progress: contextvars.ContextVar[bool] = contextvars.ContextVar("unlearnkit_decode_progress", default=False)


@contextlib.contextmanager
def decoding_progress(enabled: bool) -> Iterator[None]:
    """Show a progress bar while images are decoded inside this block."""
    token = _progress.set(enabled)
    try:
        yield
    finally:
        _progress.reset(token)


def _channel_stats(positive_only: bool):
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if not value or not all(np.isfinite(v) and (v > 0 or not positive_only) for v in value):
            need = "positive numbers" if positive_only else "finite numbers"
            raise FieldError(attribute.name, f"must be a non-empty list of {need}, one per channel, got {list(value)!r}")

    return check


@config_class
class NpzConfig:
    """Arrays from an `.npz` file (`npz:PATH`). Inputs are used as stored, as float32, then
    normalised along axis 1 (channels) by `mean` and `std` when given (one value, or one per
    channel). `augment`: per-batch random crop (4-pixel padding) and flips, for images."""

    path: str = attrs.field(default="", metadata={FROM_NAME: True})
    mean: Optional[tuple[float, ...]] = attrs.field(default=None, validator=_channel_stats(False))
    std: Optional[tuple[float, ...]] = attrs.field(default=None, validator=_channel_stats(True))
    augment: str = attrs.field(default="none", validator=one_of(*AUGMENTS))


@config_class
class FolderConfig:
    """Images in torchvision's ImageFolder layout (`folder:DIR`), read as `mode` ("rgb": 3
    channels, "gray": 1), resized to `size`×`size` pixels when `size` is set (else every image
    must have the first one's size), scaled to [0, 1], then normalised per channel by `mean` and
    `std` when given. `augment` as for npz."""

    path: str = attrs.field(default="", metadata={FROM_NAME: True})
    size: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(positive))
    mode: str = attrs.field(default="rgb", validator=one_of("rgb", "gray"))
    mean: Optional[tuple[float, ...]] = attrs.field(default=None, validator=_channel_stats(False))
    std: Optional[tuple[float, ...]] = attrs.field(default=None, validator=_channel_stats(True))
    augment: str = attrs.field(default="none", validator=one_of(*AUGMENTS))


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the named arrays: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def path_stamp(path: str | Path) -> str:
    """A cheap signature of a file or folder (paths, sizes, modification times) that changes when it does."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    if not path.is_dir():
        return "missing"
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            st = (Path(root) / name).stat()
            h.update(f"{Path(root, name).relative_to(path).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# -- npz ------------------------------------------------------------------------------------


def npz(config: NpzConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    """The dataset in the `.npz` file `config.path`."""
    where = f"npz file {config.path!r}"
    if not config.path:
        raise UsageError("dataset npz needs a file: npz:PATH")
    path = Path(config.path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays.files]
            if missing:
                raise UsageError(f"{where} lacks {', '.join(missing)} (it has: {', '.join(arrays.files) or 'nothing'})")
            data = {k: _array(arrays, k, where) for k in ("x_train", "y_train", "x_test", "y_test", "ids_train", "class_names") if k in arrays.files}
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{where} not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{where} is unreadable (not an .npz of arrays): {type(exc).__name__}") from None
    x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    for key in ("x_train", "x_test"):
        x = data[key]
        if x.ndim < 2 or not len(x) or x.dtype.kind not in "biuf":
            raise UsageError(f"{where}: {key} must be a non-empty numeric array of shape (samples, ...), got {x.dtype} {x.shape}")
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.dtype.kind == "f" else np.zeros(len(x), bool)
        if bad.any():
            raise UsageError(f"{where}: {key} holds NaN or infinite values ({int(bad.sum())} samples, first at row {int(bad.argmax())})")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise UsageError(f"{where}: x_test samples have shape {x_test.shape[1:]}, x_train samples {x_train.shape[1:]}")
    for x_key, y_key in (("x_train", "y_train"), ("x_test", "y_test")):
        y = data[y_key]
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise UsageError(f"{where}: {y_key} must be a 1-D array of integer class labels, got {y.dtype} {y.shape}")
        if len(y) != len(data[x_key]):
            raise UsageError(f"{where}: {y_key} has {len(y)} labels but {x_key} has {len(data[x_key])} samples")
        if len(y) and y.min() < 0:
            raise UsageError(f"{where}: {y_key} holds the negative label {int(y.min())}")
    ids = _strings(data["ids_train"], "ids_train", where) if "ids_train" in data else None
    if ids is not None:
        if len(ids) != len(x_train):
            raise UsageError(f"{where}: ids_train has {len(ids)} ids but x_train has {len(x_train)} samples")
        _check_ids(ids, where)
    num_classes = int(max(y_train.max(), y_test.max(initial=0))) + 1
    if "class_names" in data:
        class_names = _strings(data["class_names"], "class_names", where)
        if len(class_names) < num_classes:
            raise UsageError(f"{where}: class_names names {len(class_names)} classes but the labels go up to {num_classes - 1}")
        if len(set(class_names)) != len(class_names):
            raise UsageError(f"{where}: class_names repeats {next(c for c in class_names if class_names.count(c) > 1)!r}")
        num_classes = len(class_names)
    else:
        class_names = tuple(str(k) for k in range(num_classes))
    _check_test_classes(y_train, y_test, class_names, where, "y_test", "y_train")
    x_tr, x_te = (_normalise(torch.from_numpy(x.astype(np.float32)), config, where) for x in (x_train, x_test))
    return DatasetBundle(
        ArrayDataset(x_tr, torch.from_numpy(y_train.astype(np.int64))), ArrayDataset(x_te, torch.from_numpy(y_test.astype(np.int64))),
        num_classes, tuple(x_train.shape[1:]), FILE_RECIPE, _augment(config.augment, x_train.shape[1:], where),
        class_names=class_names, ids=ids, fingerprint=fingerprint(data),
    )


def _array(arrays: Any, key: str, where: str) -> np.ndarray:
    try:
        return arrays[key]
    except ValueError:  # allow_pickle=False refuses object arrays
        raise UsageError(f"{where}: {key} holds Python objects; save strings as a unicode array (np.array(values, dtype=str))") from None


def _strings(values: np.ndarray, key: str, where: str) -> tuple[str, ...]:
    if values.ndim != 1 or values.dtype.kind not in "USiu":
        raise UsageError(f"{where}: {key} must be a 1-D array of strings, got {values.dtype} {values.shape}")
    try:
        return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist())
    except UnicodeDecodeError:
        raise UsageError(f"{where}: {key} holds bytes that are not UTF-8 text") from None


def _check_ids(ids: tuple[str, ...], where: str) -> None:
    """Refuse ids that an ids file cannot name (empty, padded, multi-line) and duplicates."""
    bad = next((i for i in ids if not i or i != i.strip() or "\n" in i or "\r" in i), None)
    if bad is not None:
        raise UsageError(f"{where}: id {bad!r} is empty, has surrounding spaces or spans lines; ids are one per line in a forget file")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise UsageError(f"{where}: id {dup!r} names more than one training sample")


def _check_test_classes(y_train: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...], where: str, test: str, train: str) -> None:
    only_test = sorted(set(np.unique(y_test).tolist()) - set(np.unique(y_train).tolist()))
    if only_test:
        k = only_test[0]
        raise UsageError(f"{where}: class {class_names[k]!r} appears in {test} but never in {train}; a model cannot learn it")


def _normalise(x: torch.Tensor, config: Any, where: str) -> torch.Tensor:
    """(x − mean) / std along axis 1."""
    if config.mean is None and config.std is None:
        return x
    channels = x.shape[1]
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = x
    for name, values, op in (("mean", config.mean, torch.sub), ("std", config.std, torch.div)):
        if values is None:
            continue
        if len(values) not in (1, channels):
            raise UsageError(f"{where}: {name} has {len(values)} values; the data has {channels} channels (give 1 or {channels})")
        out = op(out, torch.tensor(values, dtype=torch.float32).reshape(shape))
    return out.contiguous()


def _augment(name: str, shape: tuple[int, ...], where: str) -> Any:
    if name != "none" and len(shape) != 3:
        raise UsageError(f"{where}: augment {name!r} needs images (channels, height, width); samples have shape {tuple(shape)}")
    return AUGMENTS[name]


# -- folder ---------------------------------------------------------------------------------


def folder(config: FolderConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    """The images under `config.path` (ImageFolder layout), decoded once and cached."""
    if not config.path:
        raise UsageError("dataset folder needs a directory: folder:DIR")
    root = Path(config.path)
    where = f"folder {config.path!r}"
    if not root.is_dir():
        raise UsageError(f"{where} not found (expected DIR/train/<class>/<image> and DIR/test/<class>/<image>)")
    train_files, class_names = _list_split(root, "train", where)
    test_files, test_classes = _list_split(root, "test", where)
    label = {c: k for k, c in enumerate(class_names)}
    unknown = [c for c in test_classes if c not in label]
    if unknown:
        raise UsageError(f"{where}: class {unknown[0]!r} appears in test/ but not in train/; a model cannot learn it")
    listing = [(rel, st.st_size, st.st_mtime_ns) for rel, _, st in train_files + test_files]
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "size": config.size, "mode": config.mode, "files": listing}).encode()).hexdigest()
    cache = Path(data_dir) / "folders" / f"{key[:32]}.npz"
    arrays = _read_cache(cache)
    if arrays is None:
        arrays = _decode(root, train_files, test_files, label, config, where)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays, fingerprint=np.array(fingerprint(arrays)))
        os.replace(tmp, cache)
    x_train, x_test = (_normalise(torch.from_numpy(arrays[k]).float().div_(255), config, where) for k in ("x_train", "x_test"))
    return DatasetBundle(
        ArrayDataset(x_train, torch.from_numpy(arrays["y_train"])), ArrayDataset(x_test, torch.from_numpy(arrays["y_test"])),
        len(class_names), tuple(x_train.shape[1:]), FILE_RECIPE, _augment(config.augment, x_train.shape[1:], where),
        class_names=tuple(class_names), ids=tuple(arrays["ids_train"].tolist()), fingerprint=fingerprint(arrays),
    )


def _list_split(root: Path, split: str, where: str) -> tuple[list[tuple[str, str, os.stat_result]], list[str]]:
    """(relative path, class, stat) of every image under `root/split`, sorted, and the class names."""
    base = root / split
    if not base.is_dir():
        raise UsageError(f"{where} has no {split}/ folder (expected {split}/<class>/<image>)")
    entries = sorted(p for p in base.iterdir() if not p.name.startswith("."))
    stray = next((p for p in entries if not p.is_dir()), None)
    if stray is not None:
        raise UsageError(f"{where}: {stray.relative_to(root).as_posix()} is not a class folder; images go in {split}/<class>/")
    classes = [p.name for p in entries]
    if not classes:
        raise UsageError(f"{where}: {split}/ holds no class folders")
    files = []
    for name in classes:
        found = []
        for dirpath, dirs, names in os.walk(base / name, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for n in sorted(names):
                if n.startswith("."):
                    continue
                path = Path(dirpath) / n
                rel = path.relative_to(root).as_posix()
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise UsageError(f"{where}: {rel} is not an image ({', '.join(IMAGE_EXTENSIONS)}); move it out of the dataset")
                found.append((rel, name, path.stat()))
        if not found:
            raise UsageError(f"{where}: class folder {split}/{name}/ holds no images")
        files += found
    return files, classes


def _read_cache(path: Path) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays, or None when absent, unreadable or not matching their fingerprint."""
    if not path.exists():
        return None
    keys = ("x_train", "y_train", "ids_train", "x_test", "y_test", "class_names")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in keys}
            recorded = str(stored["fingerprint"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return arrays if fingerprint(arrays) == recorded else None


def _decode(root: Path, train: list, test: list, label: dict[str, int], config: FolderConfig, where: str) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    files = train + test
    images, first = [], None
    for rel, _, _ in tqdm(files, desc=f"decoding {root.name or root}", disable=not _progress.get(), leave=False):
        image = _decode_one(root / rel, rel, config, where)
        if first is None:
            first = (rel, tuple(image.shape))
        elif tuple(image.shape) != first[1]:
            raise UsageError(f"{where}: {rel} is {image.shape[2]}×{image.shape[1]} pixels but {first[0]} is "
                             f"{first[1][2]}×{first[1][1]}; set the dataset option size = N to resize every image")
        images.append(image)
    x = torch.stack(images).numpy()
    n = len(train)
    return {
        "x_train": x[:n], "y_train": np.array([label[c] for _, c, _ in train], dtype=np.int64),
        "ids_train": np.array([rel for rel, _, _ in train], dtype=str),
        "x_test": x[n:], "y_test": np.array([label[c] for _, c, _ in test], dtype=np.int64),
        "class_names": np.array(sorted(label, key=label.get), dtype=str),
    }


def _decode_one(path: Path, rel: str, config: FolderConfig, where: str) -> torch.Tensor:
    """One image as a uint8 tensor (channels, height, width), resized when `config.size` is set."""
    from PIL import Image
    import_torchvision()
    from torchvision.transforms.v2.functional import pil_to_tensor, resize

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if config.mode == "rgb" else "L")
    except Exception as exc:  # PIL raises many kinds: UnidentifiedImageError, truncated data, bombs
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{where}: cannot read image {rel}: {reason}") from None
    tensor = pil_to_tensor(image)
    if config.size is not None and tuple(tensor.shape[1:]) != (config.size, config.size):
        tensor = resize(tensor, [config.size, config.size], antialias=True)
    return tensor
