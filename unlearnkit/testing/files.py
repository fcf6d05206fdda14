"""Tiny datasets on disk, for tests of the `npz:PATH` and `folder:DIR` datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np


def tiny_npz(path: str | Path, n_train: int = 60, n_test: int = 15, ids: bool = True, names: bool = True,
             **overrides: Optional[np.ndarray]) -> Path:
    """An `.npz` of three Gaussian classes of 6 features, ids `person-0000`..., class names a, b, c;
    `overrides` replace arrays (None removes one)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "x_train": (rng.normal(size=(n_train, 6)) + np.arange(n_train)[:, None] % 3).astype(np.float32),
        "y_train": np.arange(n_train) % 3,
        "x_test": (rng.normal(size=(n_test, 6)) + np.arange(n_test)[:, None] % 3).astype(np.float32),
        "y_test": np.arange(n_test) % 3,
    }
    if ids:
        arrays["ids_train"] = np.array([f"person-{i:04d}" for i in range(n_train)])
    if names:
        arrays["class_names"] = np.array(["a", "b", "c"])
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return Path(path)


def write_png(path: str | Path, size: tuple[int, int] = (4, 4), value: int = 0) -> Path:
    """A one-colour RGB PNG of `size` (width, height) pixels."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def tiny_image_folder(root: str | Path, classes: tuple[str, ...] = ("cat", "dog"), n_train: int = 5, n_test: int = 2) -> Path:
    """`root/{train,test}/<class>/<class>-<i>.png`, 4×4 pixels of value 40·class + i."""
    root = Path(root)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(classes):
            for i in range(n):
                write_png(root / split / name / f"{name}-{i}.png", value=40 * k + i)
    return root
