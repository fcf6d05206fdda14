"""Unlearning tasks: splits, forget sets, and the views a method is allowed to read."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Optional

import attrs
import torch

from unlearnkit.core.access import TaskView
from unlearnkit.core.config import structure_config, unstructure_config
from unlearnkit.core.errors import UsageError
from unlearnkit.core.registry import from_name_field, resolve
from unlearnkit.data.datasets import ArrayDataset, DatasetBundle, check_finite, default_data_dir

FORGET_KINDS = ("random", "class", "indices", "ids")
VAL_SOURCES = ("train", "test")
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; run configs allow int64


@attrs.frozen
class ForgetSpec:
    """`random:RATIO` (0 < RATIO < 1), `class:K`, `indices:FILE` (indices into the dataset's train
    split) or `ids:FILE` (sample ids, one a line). In Python, `ForgetSpec("indices", (3, 17, ...))`
    gives the indices themselves (the forget set a checkpoint records)."""

    kind: str
    value: Any

    def __str__(self) -> str:
        if isinstance(self.value, tuple):
            return f"indices:[{len(self.value)} samples]"
        return f"{self.kind}:{self.value}"


@attrs.frozen
class ForgetRequest:
    """What a forget spec asked for: the sorted distinct ids of the samples it names (never
    written anywhere; `digest` is), how many of them are `held_out` in the val split (never
    trained on, so not forgotten) and how many an earlier request had `already_forgotten`."""

    ids: tuple[str, ...]
    held_out: int = 0
    already_forgotten: int = 0

    @property
    def new(self) -> int:
        """Samples this request adds to the forget set."""
        return len(self.ids) - self.held_out - self.already_forgotten

    def digest(self) -> str:
        """SHA-256 of the sorted ids joined by newlines (UTF-8): what a report may show."""
        return ids_digest(self.ids)


def ids_digest(ids: Iterable[str]) -> str:
    """SHA-256 (hex) of the sorted ids joined by newlines, UTF-8."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def parse_forget(spec: "str | ForgetSpec") -> ForgetSpec:
    """Parse a forget spec, raising `UsageError` that names the bad part."""
    if isinstance(spec, ForgetSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        shown = _short(spec) if isinstance(spec, str) else spec
        raise UsageError(f"forget spec {shown!r}: expected random:RATIO, class:K, indices:FILE or ids:FILE")
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
    if kind == "ids":
        if not value:
            raise UsageError(f"forget spec {shown!r}: ids needs a file name")
        return ForgetSpec("ids", value)
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


def read_id_file(path: str | Path) -> list[str]:
    """Ids one a line (surrounding spaces dropped, blank lines skipped), duplicates folded, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"forget ids file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"forget ids file {str(path)!r} unreadable: {type(exc).__name__}") from None
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _hash_indices(indices: torch.Tensor, fingerprint: Optional[str] = None) -> str:
    h = hashlib.sha256(torch.sort(indices).values.numpy().tobytes())
    if fingerprint:  # data read from files: the same positions of other content are another split
        h.update(fingerprint.encode())
    return h.hexdigest()[:16]


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
    class_names: Optional[tuple[str, ...]] = None
    #: one id per sample of the dataset's train split (by source index); None: the index is the id
    source_ids: Optional[tuple[str, ...]] = None
    fingerprint: Optional[str] = None
    val_from: str = "train"
    request: Optional[ForgetRequest] = None

    def ids_of(self, data: ArrayDataset) -> list[str]:
        """The ids of the samples of `data`, a part of the train split."""
        positions = data.indices.tolist()
        return [self.source_ids[i] for i in positions] if self.source_ids is not None else [str(i) for i in positions]

    def view(self, reads: Iterable[str], who: str = "method") -> TaskView:
        """A read-only view that exposes only the parts in `reads`."""
        return TaskView(self, frozenset(reads), who)

    def split_hashes(self) -> dict[str, str]:
        """Short hashes of the source indices of every split (for results manifests)."""
        parts = ("train", "val", "test", "forget", "retain")
        return {p: _hash_indices(getattr(self, p).indices, self.fingerprint) for p in parts}

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
            **self.data_record(),
        }

    def data_record(self) -> dict[str, Any]:
        """What a checkpoint records about the data beyond its name and settings: class names and
        content hash (datasets read from files), and where val comes from when not train."""
        record: dict[str, Any] = {}
        if self.class_names is not None:
            record["class_names"] = list(self.class_names)
        if self.fingerprint:
            record["dataset_fingerprint"] = self.fingerprint
        if self.val_from != "train":
            record["val_from"] = self.val_from
        return record


@functools.lru_cache(maxsize=8)
def _load_bundle(dataset: str, config_key: str, data_dir: str, download: bool, stamp: str = "") -> tuple[DatasetBundle, dict]:
    """The dataset's bundle and its recorded settings; `stamp` (of a dataset's files) keys the cache."""
    import json

    entry, settings = resolve("dataset", dataset, json.loads(config_key))
    config = structure_config(entry.config_cls, settings, path=f"$.dataset.{entry.name}")
    bundle = entry.factory(config, Path(data_dir), download)
    check_finite(dataset, bundle.train)
    check_finite(dataset, bundle.test)
    recorded = unstructure_config(config)
    recorded.pop(from_name_field(entry.config_cls) or "", None)  # it is in the name
    return bundle, recorded


def load_bundle(dataset: str, dataset_config: Optional[dict] = None, data_dir: Optional[str | Path] = None,
                download: bool = False, progress: bool = False) -> tuple[DatasetBundle, dict]:
    """The dataset `dataset` (`NAME` or `NAME:PATH`) and its recorded settings, loaded once per
    process while its files do not change."""
    import json

    from unlearnkit.data.files import decoding_progress, path_stamp

    entry, settings = resolve("dataset", dataset, dataset_config)
    field = from_name_field(entry.config_cls)
    stamp = ""
    if field and isinstance(settings.get(field), str) and settings[field]:
        stamp = f"{Path(settings[field]).absolute()}|{path_stamp(settings[field])}"
    data_dir = str(Path(data_dir) if data_dir else default_data_dir())
    with decoding_progress(progress):
        return _load_bundle(dataset, json.dumps(dataset_config or {}, sort_keys=True), data_dir, download, stamp)


def make_task(
    dataset: str = "mnist1d",
    forget: "str | ForgetSpec" = "random:0.1",
    retain_access: float = 0.3,
    seed: int = 0,
    *,
    val_ratio: float = 0.1,
    val_from: str = "train",
    data_dir: Optional[str | Path] = None,
    download: bool = False,
    dataset_config: Optional[dict] = None,
    progress: bool = False,
) -> UnlearningTask:
    """Load `dataset` and split it into an unlearning task; `seed` fixes val, D_f and D̂_r.

    `val_from="train"` holds `val_ratio` of the train split out of training (a model unlearnkit
    trains never sees it); `"test"` takes val from the test split instead, for a model trained
    elsewhere on the whole train split.
    """
    spec = parse_forget(forget)
    if isinstance(retain_access, bool) or not isinstance(retain_access, (int, float)) or not 0 < retain_access <= 1:
        raise UsageError(f"retain_access must be in (0, 1], got {retain_access!r}")
    if isinstance(val_ratio, bool) or not isinstance(val_ratio, (int, float)) or not 0 < val_ratio < 1:
        raise UsageError(f"val_ratio must be in (0, 1), got {val_ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    if val_from not in VAL_SOURCES:
        raise UsageError(f"val_from must be one of {', '.join(VAL_SOURCES)}, got {val_from!r}")
    bundle, config = load_bundle(dataset, dataset_config, data_dir, download, progress)

    g = torch.Generator().manual_seed(seed)
    split = bundle.train if val_from == "train" else bundle.test
    order = torch.randperm(len(split), generator=g)
    n_val = max(1, int(round(val_ratio * len(split))))
    val_pos, kept_pos = order[:n_val].sort().values, order[n_val:].sort().values
    val = split.subset(val_pos)
    train, test = (bundle.train.subset(kept_pos), bundle.test) if val_from == "train" else (bundle.train, bundle.test.subset(kept_pos))
    held_out = val.indices if val_from == "train" else torch.empty(0, dtype=torch.long)

    forget_mask, request = _forget_mask(spec, train, held_out, len(bundle.train), bundle, g)
    if not forget_mask.any():
        if request is not None and request.held_out:
            raise UsageError(f"forget spec {spec}: all {request.held_out} ids are in the held-out validation split; "
                             "the model never trained on them, so there is nothing to unlearn")
        raise UsageError(f"forget spec {spec}: the forget set is empty")
    if forget_mask.all():
        raise UsageError(f"forget spec {spec}: the forget set is the whole training set; nothing would remain")
    forget_set = train.subset(forget_mask.nonzero().squeeze(1))
    retain_full = train.subset((~forget_mask).nonzero().squeeze(1))
    n_access = max(1, int(round(retain_access * len(retain_full))))
    access = torch.randperm(len(retain_full), generator=g)[:n_access].sort().values
    task = UnlearningTask(
        dataset=dataset, dataset_config=config, seed=seed, forget_spec=spec, retain_access=float(retain_access),
        train=train, val=val, test=test, forget=forget_set, retain_full=retain_full,
        retain=retain_full.subset(access), num_classes=bundle.num_classes, input_shape=tuple(bundle.input_shape),
        recipe=bundle.recipe, augment=bundle.augment, class_names=bundle.class_names, source_ids=bundle.ids,
        fingerprint=bundle.fingerprint, val_from=val_from,
    )
    task.request = request or ForgetRequest(tuple(sorted(task.ids_of(forget_set))))
    return task


def _forget_mask(spec: ForgetSpec, train: ArrayDataset, held_out: torch.Tensor, n_source: int, bundle: DatasetBundle,
                 g: torch.Generator) -> tuple[torch.Tensor, Optional[ForgetRequest]]:
    """Which samples of `train` the spec forgets (and, for ids, what the request named)."""
    if spec.kind == "random":
        k = int(round(spec.value * len(train)))
        mask = torch.zeros(len(train), dtype=torch.bool)
        mask[torch.randperm(len(train), generator=g)[:k]] = True
        return mask, None
    if spec.kind == "class":
        if spec.value >= bundle.num_classes:
            raise UsageError(f"forget spec {spec}: class {spec.value} does not exist (classes 0..{bundle.num_classes - 1})")
        return train.y == spec.value, None
    if spec.kind == "ids":
        return _ids_mask(spec.value, train, held_out, bundle)
    recorded = isinstance(spec.value, tuple)
    where = "recorded forget set" if recorded else f"forget index file {spec.value!r}"
    wanted = torch.tensor(spec.value, dtype=torch.long) if recorded else read_index_file(spec.value)
    if len(wanted) != len(torch.unique(wanted)):
        values, counts = torch.unique(wanted, return_counts=True)
        raise UsageError(f"{where}: index {int(values[counts > 1][0])} appears more than once")
    out_of_range = wanted[(wanted >= n_source) | (wanted < 0)]
    if len(out_of_range):
        raise UsageError(f"{where}: index {int(out_of_range[0])} is out of range (train split has {n_source} samples)")
    in_val = wanted[torch.isin(wanted, held_out)]
    if len(in_val):
        raise UsageError(f"{where}: index {int(in_val[0])} is in the held-out validation split, not in train")
    return torch.isin(train.indices, wanted), None


def _ids_mask(path: str, train: ArrayDataset, held_out: torch.Tensor, bundle: DatasetBundle) -> tuple[torch.Tensor, ForgetRequest]:
    """`ids:FILE`: unknown ids are refused (the first few named); ids in the val split were never
    trained on and are counted, not forgotten."""
    wanted = read_id_file(path)
    source_ids = bundle.ids if bundle.ids is not None else tuple(str(i) for i in range(len(bundle.train)))
    position = {sample_id: i for i, sample_id in enumerate(source_ids)}
    unknown = [i for i in wanted if i not in position]
    if unknown:
        shown = ", ".join(repr(_short(i, 60)) for i in unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        example = f"like {_short(source_ids[0], 60)!r}" if source_ids else ""
        raise UsageError(f"forget ids file {path!r}: {len(unknown)} id(s) are not in the dataset's train split: {shown} "
                         f"(ids are {'paths relative to the folder' if bundle.ids is not None else 'row numbers'}, {example})")
    indices = torch.tensor([position[i] for i in wanted], dtype=torch.long)
    n_held_out = int(torch.isin(indices, held_out).sum())
    return torch.isin(train.indices, indices), ForgetRequest(tuple(sorted(wanted)), n_held_out)
