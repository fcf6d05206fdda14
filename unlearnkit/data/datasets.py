"""In-memory datasets and the built-in dataset factories.

Every dataset is held as tensors (`ArrayDataset`), so training and evaluation batch by
indexing, with augmentation applied per batch on the device. Datasets that download
(CIFAR, SVHN) go through torchvision and download only when asked.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.core.config import config_class
from unlearnkit.core.errors import UsageError, import_torchvision
from unlearnkit.core.validators import in_range, positive
from unlearnkit.data.recipe import TrainConfig

DATA_DIR_ENV = "UNLEARNKIT_DATA_DIR"


def default_data_dir() -> Path:
    """`$UNLEARNKIT_DATA_DIR`, else `~/.cache/unlearnkit`."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "unlearnkit")


class ArrayDataset(torch.utils.data.Dataset):
    """Inputs `x` (float) and labels `y` (long) as tensors; `indices` locate them in their source."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: Optional[torch.Tensor] = None):
        if len(x) != len(y):
            raise UsageError(f"inputs and labels differ in length: {len(x)} != {len(y)}")
        self.x = x
        self.y = y.long()
        self.indices = torch.arange(len(y)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def subset(self, positions: torch.Tensor) -> "ArrayDataset":
        """The samples at `positions` (into this dataset), keeping their source indices."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return ArrayDataset(self.x[positions], self.y[positions], self.indices[positions])


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@attrs.frozen
class DatasetBundle:
    """What a dataset factory returns: train and test splits and how to train on them.

    Datasets read from the user's files also give `class_names`, `ids` (one string per
    train-split sample, e.g. an image's path) and `fingerprint`, a hash of their content that
    checkpoints record so that a changed file is noticed.
    """

    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    input_shape: tuple[int, ...]
    recipe: TrainConfig
    augment: Optional[Augment] = None
    class_names: Optional[tuple[str, ...]] = None
    ids: Optional[tuple[str, ...]] = None
    fingerprint: Optional[str] = None


def check_finite(name: str, dataset: ArrayDataset) -> None:
    """Refuse NaN or infinite inputs, naming the dataset and the first bad sample."""
    bad = ~torch.isfinite(dataset.x.reshape(len(dataset), -1)).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise UsageError(f"dataset {name!r} holds NaN or infinite inputs ({int(bad.sum())} samples, first at {first})")


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding and optional horizontal flip, drawn per sample."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def _crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return crop_flip(x, generator, flip=False)


# -- MNIST-1D -------------------------------------------------------------------------------


@config_class
class Mnist1dConfig:
    """MNIST-1D generated locally (`mnist1d` package); `num_samples` in all, 80% train / 20% test."""

    num_samples: int = attrs.field(default=5000, validator=positive)
    seed: int = 42


def mnist1d(config: Mnist1dConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    path = Path(data_dir) / f"mnist1d-n{config.num_samples}-s{config.seed}.npz"
    data = _read_npz(path, ("x", "y", "x_test", "y_test")) if path.exists() else None
    if data is None:  # not cached yet, or the cache is unreadable: generate (again)
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = config.num_samples, config.seed
        made = make_dataset(args)
        data = {k: made[k] for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)

    def tensors(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
        return ArrayDataset(torch.tensor(x, dtype=torch.float32).unsqueeze(1), torch.tensor(y, dtype=torch.long))

    # [choice] a recipe under which CNN1D memorises its training set (RA 100): the regime in
    # which membership inference, and so unlearning, is meaningful.
    recipe = TrainConfig(epochs=60, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    return DatasetBundle(tensors(data["x"], data["y"]), tensors(data["x_test"], data["y_test"]), 10, (1, 40), recipe)


def _read_npz(path: Path, keys: tuple[str, ...]) -> Optional[dict[str, np.ndarray]]:
    """The arrays `keys` of a cached `.npz`, or None when it is truncated, foreign or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {k: arrays[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


# -- torchvision image datasets -------------------------------------------------------------


@config_class
class ImageConfig:
    """An image dataset read from `data_dir` (downloaded there only with `download`)."""

    normalize: bool = True


CIFAR_RECIPE = TrainConfig(epochs=182, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="step")


def _images(data: np.ndarray, layout: str, mean: tuple, std: tuple, normalize: bool) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(data))
    if layout == "nhwc":
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255)
    if normalize:
        x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return x.contiguous()


def _torchvision(name: str, make: Callable[[bool], object], data_dir: Path, download: bool) -> object:
    try:
        return make(True)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        if download:
            raise UsageError(f"dataset {name!r} under {data_dir} is corrupted even after downloading; delete it and retry") from None
        raise UsageError(
            f"dataset {name!r} not found (or corrupted) under {data_dir}; pass --download (download=True) to fetch it, "
            "or --data-dir to point at a copy"
        ) from None
    except (OSError, tarfile.TarError) as exc:  # no network, disk full, a broken archive
        raise UsageError(f"dataset {name!r}: download into {data_dir} failed: {type(exc).__name__}: {exc}") from None


def _cifar(name: str, num_classes: int, mean: tuple, std: tuple) -> Callable[..., DatasetBundle]:
    def factory(config: ImageConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
        import_torchvision()
        from torchvision import datasets

        cls = datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100
        splits = [
            _torchvision(name, lambda _ok, train=train: cls(str(data_dir), train=train, download=download), data_dir, download)
            for train in (True, False)
        ]
        train, test = (
            ArrayDataset(_images(s.data, "nhwc", mean, std, config.normalize), torch.tensor(s.targets)) for s in splits
        )
        return DatasetBundle(train, test, num_classes, (3, 32, 32), CIFAR_RECIPE, crop_flip)

    return factory


cifar10 = _cifar("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
cifar100 = _cifar("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def svhn(config: ImageConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    import_torchvision()
    from torchvision import datasets

    mean, std = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    splits = [
        _torchvision("svhn", lambda _ok, split=split: datasets.SVHN(str(data_dir), split=split, download=download), data_dir, download)
        for split in ("train", "test")
    ]
    train, test = (ArrayDataset(_images(s.data, "nchw", mean, std, config.normalize), torch.tensor(s.labels)) for s in splits)
    recipe = attrs.evolve(CIFAR_RECIPE, epochs=50)
    return DatasetBundle(train, test, 10, (3, 32, 32), recipe, _crop)  # digits: no flips


# -- Tiny-ImageNet --------------------------------------------------------------------------


@config_class
class TinyImageNetConfig:
    """Tiny-ImageNet from an extracted `tiny-imagenet-200` folder inside `data_dir`."""

    folder: str = "tiny-imagenet-200"
    normalize: bool = True


def tiny_imagenet(config: TinyImageNetConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    import_torchvision()
    from torchvision.io import ImageReadMode, decode_image

    root = Path(data_dir) / config.folder
    if not (root / "wnids.txt").is_file():
        raise UsageError(f"Tiny-ImageNet not found: expected {root}/wnids.txt (extract tiny-imagenet-200.zip into --data-dir)")
    wnids = (root / "wnids.txt").read_text().split()
    label = {w: i for i, w in enumerate(wnids)}
    if not wnids or len(label) != len(wnids):
        raise UsageError(f"Tiny-ImageNet: {root}/wnids.txt must list distinct class ids, one a line")

    def decode(f: Path) -> torch.Tensor:
        try:
            image = decode_image(str(f), mode=ImageReadMode.RGB)  # grayscale files become RGB
        except (RuntimeError, OSError) as exc:
            raise UsageError(f"Tiny-ImageNet: cannot decode {f}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if tuple(image.shape) != (3, 64, 64):
            raise UsageError(f"Tiny-ImageNet: {f} is {tuple(image.shape[1:])} pixels; expected (64, 64)")
        return image

    def load(split: str, files: list[tuple[Path, int]]) -> ArrayDataset:
        if not files:
            raise UsageError(f"Tiny-ImageNet: no {split} images found under {root}/{split}")
        images = [decode(f) for f, _ in files]
        x = _images(torch.stack(images).numpy(), "nchw", (0.480, 0.448, 0.398), (0.277, 0.269, 0.282), config.normalize)
        return ArrayDataset(x, torch.tensor([y for _, y in files]))

    train = sorted((f, label[w]) for w in wnids for f in (root / "train" / w / "images").glob("*") if f.is_file())
    annotations_file = root / "val" / "val_annotations.txt"
    if not annotations_file.is_file():
        raise UsageError(f"Tiny-ImageNet: {annotations_file} not found")
    val = []
    for number, line in enumerate(annotations_file.read_text().splitlines(), 1):
        parts = line.split("\t")
        if not parts[0].strip():
            continue
        if len(parts) < 2 or parts[1] not in label:
            raise UsageError(f"Tiny-ImageNet: {annotations_file} line {number}: class id {parts[1] if len(parts) > 1 else None!r} is not in wnids.txt")
        val.append((root / "val" / "images" / parts[0], label[parts[1]]))
    recipe = TrainConfig(epochs=100, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    return DatasetBundle(load("train", train), load("val", sorted(val)), len(wnids), (3, 64, 64), recipe, crop_flip)


@config_class
class SyntheticConfig:
    """Gaussian class clusters: a tiny, instant task for tests and plugin authors."""

    num_samples: int = attrs.field(default=400, validator=positive)
    num_classes: int = attrs.field(default=4, validator=positive)
    dim: int = attrs.field(default=16, validator=positive)
    noise: float = attrs.field(default=3.0, validator=in_range(0.0, 100.0))
    seed: int = 0


def synthetic(config: SyntheticConfig, data_dir: Path, download: bool = False) -> DatasetBundle:
    g = torch.Generator().manual_seed(config.seed)
    centres = torch.randn(config.num_classes, config.dim, generator=g) * 2
    y = torch.arange(config.num_samples) % config.num_classes
    x = centres[y] + config.noise * torch.randn(config.num_samples, config.dim, generator=g)
    cut = int(0.8 * config.num_samples)
    recipe = TrainConfig(epochs=20, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0, schedule="constant")
    return DatasetBundle(ArrayDataset(x[:cut], y[:cut]), ArrayDataset(x[cut:], y[cut:]), config.num_classes, (config.dim,), recipe)
