"""Unlearning tasks: splits, forget sets, and the views a method is allowed to read."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Optional

import attrs
import torch

from unlearnkit.config import config_hash, structure_config, unstructure_config
from unlearnkit.data import ArrayDataset, DatasetBundle, check_finite, default_data_dir
from unlearnkit.errors import DataAccessError, UsageError
from unlearnkit.interfaces import TASK_PARTS
from unlearnkit.plugins import registry

FORGET_KINDS = ("random", "class", "indices")
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; run configs allow int64


@attrs.frozen
class ForgetSpec:
    """`random:RATIO` (0 < RATIO < 1), `class:K`, or `indices:FILE` (indices into the dataset's train split)."""

    kind: str
    value: Any

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_forget(spec: "str | ForgetSpec") -> ForgetSpec:
    """Parse a forget spec, raising `UsageError` that names the bad part."""
    if isinstance(spec, ForgetSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        shown = _short(spec) if isinstance(spec, str) else spec
        raise UsageError(f"forget spec {shown!r}: expected random:RATIO, class:K or indices:FILE")
    kind, _, value = spec.partition(":")
    shown = _short(spec, 60)
    if kind == "random":
        try:
            ratio = float(value)
        except ValueError:
            raise UsageError(f"forget spec {shown!r}: ratio {_short(value)!r} is not a number") from None
        if not 0 < ratio < 1:
            raise UsageError(f"forget spec {shown!r}: ratio must be in (0, 1), got {_short(value)}")
        return ForgetSpec("random", ratio)
    if kind == "class":
        digits = value.strip()
        if not re.fullmatch(r"[0-9]+", digits):
            raise UsageError(f"forget spec {shown!r}: class must be a non-negative integer, got {_short(value)!r}")
        if len(digits.lstrip("0")) > 18:  # also keeps int() clear of Python's digit limit
            raise UsageError(f"forget spec {shown!r}: class {_short(digits)} does not exist")
        return ForgetSpec("class", int(digits))
    if kind == "indices":
        if not value:
            raise UsageError(f"forget spec {shown!r}: indices needs a file name")
        return ForgetSpec("indices", value)
    raise UsageError(f"forget spec {shown!r}: unknown kind {_short(kind)!r}; expected one of {', '.join(FORGET_KINDS)}")


def read_index_file(path: str | Path) -> torch.Tensor:
    """Integers separated by whitespace or commas; `#` starts a comment."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"forget index file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the name
        raise UsageError(f"forget index file {str(path)!r} unreadable: {exc}") from None
    tokens = [t for line in text.splitlines() for t in re.split(r"[\s,]+", line.split("#")[0]) if t]
    bad = [t for t in tokens if not re.fullmatch(r"[0-9]+", t)]
    if bad:
        raise UsageError(f"forget index file {str(path)!r}: {_short(bad[0])!r} is not a non-negative integer")
    huge = [t for t in tokens if len(t.lstrip("0")) > 18]  # beyond int64 (and int()'s digit limit)
    if huge:
        raise UsageError(f"forget index file {str(path)!r}: index {_short(huge[0])} is out of range")
    return torch.tensor([int(t) for t in tokens], dtype=torch.long)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _hash_indices(indices: torch.Tensor) -> str:
    return hashlib.sha256(torch.sort(indices).values.numpy().tobytes()).hexdigest()[:16]


@attrs.define(eq=False)
class UnlearningTask:
    """A dataset split into train (= D_r ∪ D_f), val, test, with the forget set and D̂_r.

    `retain` is the accessible subset D̂_r (`retain_access`·|D_r| samples); `retain_full` all of D_r.
    """

    dataset: str
    dataset_config: dict
    seed: int
    forget_spec: ForgetSpec
    retain_access: float
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    forget: ArrayDataset
    retain_full: ArrayDataset
    retain: ArrayDataset
    num_classes: int
    input_shape: tuple[int, ...]
    recipe: Any
    augment: Any = None

    def view(self, reads: Iterable[str], who: str = "method") -> "TaskView":
        """A read-only view that exposes only the parts in `reads`."""
        return TaskView(self, frozenset(reads), who)

    def split_hashes(self) -> dict[str, str]:
        """Short hashes of the source indices of every split (for results manifests)."""
        parts = ("train", "val", "test", "forget", "retain")
        return {p: _hash_indices(getattr(self, p).indices) for p in parts}

    def describe(self) -> dict[str, Any]:
        """What identifies this task: enough to rebuild it with `make_task`."""
        return {
            "dataset": self.dataset,
            "dataset_config": self.dataset_config,
            "seed": self.seed,
            "forget": str(self.forget_spec),
            "retain_access": self.retain_access,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
        }


_METADATA = frozenset({"dataset", "dataset_config", "seed", "forget_spec", "retain_access", "num_classes", "input_shape", "recipe", "augment", "describe"})


class TaskView:
    """The task as a method sees it: declared parts and metadata only. `accessed` records reads."""

    def __init__(self, task: UnlearningTask, reads: frozenset[str], who: str):
        unknown = set(reads) - set(TASK_PARTS)
        if unknown:
            raise UsageError(f"{who} declares unknown task parts {sorted(unknown)}; expected a subset of {TASK_PARTS}")
        object.__setattr__(self, "_task", task)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "who", who)
        object.__setattr__(self, "accessed", set())

    def __getattr__(self, name: str) -> Any:
        if name in TASK_PARTS or name == "test":
            if name not in self.reads:
                raise DataAccessError(
                    f"{self.who} read task.{name} but declares reads={sorted(self.reads)}; "
                    f"add {name!r} to its `reads` if it really needs it"
                )
            self.accessed.add(name)
            return getattr(self._task, name)
        if name in _METADATA:
            return getattr(self._task, name)
        raise AttributeError(f"task view has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a task view is read-only")


@functools.lru_cache(maxsize=8)
def _load_bundle(dataset: str, config_key: str, data_dir: str, download: bool) -> tuple[DatasetBundle, dict]:
    import json

    entry = registry.get("dataset", dataset)
    config = structure_config(entry.config_cls, json.loads(config_key), path=f"$.dataset.{dataset}")
    bundle = entry.factory(config, Path(data_dir), download)
    check_finite(dataset, bundle.train)
    check_finite(dataset, bundle.test)
    return bundle, unstructure_config(config)


def make_task(
    dataset: str = "mnist1d",
    forget: "str | ForgetSpec" = "random:0.1",
    retain_access: float = 0.3,
    seed: int = 0,
    *,
    val_ratio: float = 0.1,
    data_dir: Optional[str | Path] = None,
    download: bool = False,
    dataset_config: Optional[dict] = None,
) -> UnlearningTask:
    """Load `dataset` and split it into an unlearning task; `seed` fixes val, D_f and D̂_r."""
    import json

    spec = parse_forget(forget)
    if isinstance(retain_access, bool) or not isinstance(retain_access, (int, float)) or not 0 < retain_access <= 1:
        raise UsageError(f"retain_access must be in (0, 1], got {retain_access!r}")
    if isinstance(val_ratio, bool) or not isinstance(val_ratio, (int, float)) or not 0 < val_ratio < 1:
        raise UsageError(f"val_ratio must be in (0, 1), got {val_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    data_dir = str(Path(data_dir) if data_dir else default_data_dir())
    bundle, config = _load_bundle(dataset, json.dumps(dataset_config or {}, sort_keys=True), data_dir, download)

    g = torch.Generator().manual_seed(seed)
    source = bundle.train
    n = len(source)
    order = torch.randperm(n, generator=g)
    n_val = max(1, int(round(val_ratio * n)))
    val_pos, train_pos = order[:n_val].sort().values, order[n_val:].sort().values
    train, val = source.subset(train_pos), source.subset(val_pos)

    forget_mask = _forget_mask(spec, train, val, n, bundle.num_classes, g)
    if not forget_mask.any():
        raise UsageError(f"forget spec {spec}: the forget set is empty")
    if forget_mask.all():
        raise UsageError(f"forget spec {spec}: the forget set is the whole training set; nothing would remain")
    forget_set = train.subset(forget_mask.nonzero().squeeze(1))
    retain_full = train.subset((~forget_mask).nonzero().squeeze(1))
    n_access = max(1, int(round(retain_access * len(retain_full))))
    access = torch.randperm(len(retain_full), generator=g)[:n_access].sort().values
    return UnlearningTask(
        dataset=dataset, dataset_config=config, seed=seed, forget_spec=spec, retain_access=float(retain_access),
        train=train, val=val, test=bundle.test, forget=forget_set, retain_full=retain_full,
        retain=retain_full.subset(access), num_classes=bundle.num_classes, input_shape=tuple(bundle.input_shape),
        recipe=bundle.recipe, augment=bundle.augment,
    )


def _forget_mask(spec: ForgetSpec, train: ArrayDataset, val: ArrayDataset, n_source: int, num_classes: int, g: torch.Generator) -> torch.Tensor:
    if spec.kind == "random":
        k = int(round(spec.value * len(train)))
        mask = torch.zeros(len(train), dtype=torch.bool)
        mask[torch.randperm(len(train), generator=g)[:k]] = True
        return mask
    if spec.kind == "class":
        if spec.value >= num_classes:
            raise UsageError(f"forget spec {spec}: class {spec.value} does not exist (classes 0..{num_classes - 1})")
        return train.y == spec.value
    wanted = read_index_file(spec.value)
    if len(wanted) != len(torch.unique(wanted)):
        values, counts = torch.unique(wanted, return_counts=True)
        raise UsageError(f"forget index file {spec.value!r}: index {int(values[counts > 1][0])} appears more than once")
    out_of_range = wanted[wanted >= n_source]
    if len(out_of_range):
        raise UsageError(f"forget index file {spec.value!r}: index {int(out_of_range[0])} is out of range (train split has {n_source} samples)")
    in_val = wanted[torch.isin(wanted, val.indices)]
    if len(in_val):
        raise UsageError(f"forget index file {spec.value!r}: index {int(in_val[0])} is in the held-out validation split, not in train")
    return torch.isin(train.indices, wanted)
