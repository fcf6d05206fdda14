"""Checkpoints: weights plus what they were trained on, written atomically, verified on load."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.core.errors import CheckpointError

FORMAT = "unlearnkit-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("dataset", "model", "num_classes", "input_shape")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d tensors (BatchNorm's counter)
    return h.hexdigest()


_UNFINISHED = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # what `atomic_write_bytes`'s mkstemp names


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place.

    The file gets the mode a plain `open(path, "w")` would give (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes it 0600
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_unfinished_writes(folder: str | Path) -> list[Path]:
    """Remove the temporary files `atomic_write_bytes` left in `folder` or a folder inside it when
    its process was killed mid-write (SIGKILL): only names as `mkstemp` makes them,
    `.NAME.` + 8 random characters + `.tmp`. Call it only while no other process writes there. Returns them."""
    folder = Path(folder)
    left = sorted(p for p in (*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp")) if _UNFINISHED.fullmatch(p.name))
    for tmp in left:
        tmp.unlink(missing_ok=True)
    return left


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], *, overwrite: bool = True) -> Path:
    """Save `model`'s weights with `meta` (needs dataset, model, num_classes, input_shape)."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} exists; refusing to overwrite it")
    from unlearnkit.core import __version__

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": {**meta, "unlearnkit_version": __version__},
        "digest": state_digest(state),
        "state_dict": state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`(state_dict, meta)` of an unlearnkit checkpoint; anything else raises `CheckpointError`.

    Loads with `weights_only=True`, so a pickle that carries code is refused, never run.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    problem = _not_torch(path)
    if problem:
        raise CheckpointError(f"checkpoint {str(path)!r} is not an unlearnkit checkpoint: {problem}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: keep CLI errors to one line
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} refused: {_refusal(exc)}; unlearnkit loads plain weights only and never runs code from a file") from None
    except Exception:  # a truncated or damaged archive
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable: a torch file that is truncated or damaged") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not an unlearnkit checkpoint (no {FORMAT!r} header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {payload.get('format_version')!r}; expected {FORMAT_VERSION}")
    state, meta = payload.get("state_dict"), payload.get("meta")
    if not isinstance(state, dict) or not isinstance(meta, dict) or any(k not in meta for k in REQUIRED_META):
        raise CheckpointError(f"checkpoint {str(path)!r} lacks weights or metadata")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"checkpoint {str(path)!r} holds weights that are not named tensors")
    problem = _meta_problem(meta)
    if problem:
        raise CheckpointError(f"checkpoint {str(path)!r} has malformed metadata: {problem}")
    if state_digest(state) != payload.get("digest"):
        raise CheckpointError(f"checkpoint {str(path)!r} failed verification: its weights do not match their digest (tampered or corrupted)")
    return state, meta


def _not_torch(path: Path) -> str:
    """Why `path` is not a torch file at all, judged by its first bytes; "" when it may be one."""
    with path.open("rb") as fh:
        head = fh.read(64)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch's zip archive, a legacy torch pickle
        return ""
    try:
        text = head.decode()
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at byte 64
            return f"not a torch file (it starts with bytes {head[:8].hex(' ')})"
        text = head[: exc.start].decode()
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"it is a text file (starting {first[:40]!r}), not a torch file"


def _refusal(exc: pickle.UnpicklingError) -> str:
    """Why torch's weights-only unpickler refused a file, in a few words (its message is long)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds code or objects other than tensors ({found.group(1)})"
    return "it is not a plain-weights file (not a torch checkpoint, or a pickle of arbitrary objects)"


def _meta_problem(meta: dict[str, Any]) -> str:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if not isinstance(meta["dataset"], str) or not isinstance(meta["model"], str):
        return f"dataset and model must be names, got {meta['dataset']!r} and {meta['model']!r}"
    if not is_int(meta["num_classes"]):
        return f"num_classes must be a positive integer, got {meta['num_classes']!r}"
    shape = meta["input_shape"]
    if not isinstance(shape, (list, tuple)) or not shape or not all(is_int(d) for d in shape):
        return f"input_shape must be a list of positive integers, got {shape!r}"
    if meta.get("model_config") is not None and not isinstance(meta["model_config"], dict):
        return f"model_config must be a table of settings, got {meta['model_config']!r}"
    names = meta.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != meta["num_classes"] or not all(isinstance(n, str) for n in names)):
        return f"class_names must list {meta['num_classes']} names, got {_clip(names)}"
    if not isinstance(meta.get("dataset_fingerprint", ""), str) or meta.get("val_from", "train") not in ("train", "test"):
        return f"dataset_fingerprint must be a string and val_from 'train' or 'test', got {_clip(meta.get('dataset_fingerprint'))}, {_clip(meta.get('val_from'))}"
    forget_set = meta.get("forget_set")
    if forget_set is not None:
        indices = forget_set.get("indices") if isinstance(forget_set, dict) else None
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
            return f"forget_set must record the forgotten samples' indices, got {_clip(forget_set)}"
    return ""


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the registered model a checkpoint names and load its weights."""
    from unlearnkit.core.registry import build_model

    state, meta = load_checkpoint(path)
    shape = type("Shape", (), {"input_shape": tuple(meta["input_shape"]), "num_classes": int(meta["num_classes"])})
    model = build_model(meta["model"], shape, config=meta.get("model_config") or None)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit model {meta['model']!r}: {str(exc).splitlines()[0]}") from None
    return model.eval(), meta


def read_model(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """The model an unlearnkit checkpoint holds, rebuilt from the registered model it names, in eval
    mode on `device` (default CPU); public as `unlearnkit.load_model`. Its metadata: `load_checkpoint`."""
    model, _ = load_model(path)
    return model.to(device or "cpu")
