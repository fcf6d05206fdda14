"""Weights trained elsewhere: reading a plain state dict and fitting it to a model (`unlearnkit import`)."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from unlearnkit.core.errors import UsageError
from unlearnkit.engine.checkpoint import FORMAT, _refusal

#: Keys under which training scripts commonly nest the state dict.
NESTED = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in `path` (loaded with `weights_only=True`): a mapping of names to tensors,
    possibly nested under `state_dict`, `model_state_dict` or `model`, with a DataParallel
    `module.` prefix removed."""
    where = f"weights file {str(path)!r}"
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{where} not found" if not path.exists() else f"{where} is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _refusal(exc)
        hint = "; save the model's state_dict(), not the model object" if "holds code" in reason else ""
        raise UsageError(f"{where} refused: {reason}{hint}") from None
    except Exception as exc:  # truncated, empty, not a torch file
        raise UsageError(f"{where} is unreadable (not a torch.save file, or truncated): {type(exc).__name__}") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        raise UsageError(f"{where} is already an unlearnkit checkpoint; pass it to unlearn or evaluate directly")
    if isinstance(payload, dict):
        for key in NESTED:
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise UsageError(f"{where} is not a state dict (a mapping of parameter names to tensors): save model.state_dict()")
    if all(k.startswith("module.") for k in payload):
        payload = {k[len("module."):]: v for k, v in payload.items()}
    bad = next((k for k, v in payload.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise UsageError(f"{where}: {bad} holds NaN or infinite values")
    return payload


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], model_name: str, where: str) -> None:
    """Load `state` into `model`, or raise a `UsageError` listing missing, unexpected and wrongly-shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (model: {tuple(expected[k].shape)})" for k in expected
             if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {_few(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise UsageError(f"{where} does not fit {model_name}: {'; '.join(parts)}")
    model.load_state_dict(state)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _few(keys: list[str], shown: int = 4) -> str:
    text = ", ".join(keys[:shown])
    return f"{text} and {len(keys) - shown} more" if len(keys) > shown else text
