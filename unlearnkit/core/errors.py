"""Error types. Every error a user can cause derives from `UnlearnkitError`; `import_torchvision`
turns a torchvision built for another torch into one."""

from __future__ import annotations

import importlib
import importlib.metadata as md
from types import ModuleType


class UnlearnkitError(Exception):
    """Base class of every error unlearnkit raises on purpose."""


class UsageError(UnlearnkitError, ValueError):
    """A bad value from the user: a name, a spec, a range. The CLI exits with status 2."""


class ConfigError(UsageError):
    """A configuration that does not structure; `errors` holds one `path: message` line each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class UnknownComponentError(UsageError, KeyError):
    """A registry lookup for a name nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(UnlearnkitError):
    """Two distributions registered the same name for the same kind."""


class CheckpointError(UsageError):
    """A checkpoint that is missing, truncated, tampered, foreign or does not match the task."""


class DataAccessError(UnlearnkitError, PermissionError):
    """A method read a part of the task it did not declare."""


class DivergenceError(UnlearnkitError, FloatingPointError):
    """Training or unlearning produced a NaN or infinite loss, or a model whose outputs are not finite.

    A message that ends with `GENERIC_ADVICE` is given the method's own settings to lower by
    `Unlearner.unlearn`; a method that names its setting itself keeps its message.
    """

    GENERIC_ADVICE = "lower the learning rate"


class NothingRemovedError(UnlearnkitError):
    """An unlearning run returned the weights it was given: it removed nothing."""


def import_torchvision() -> ModuleType:
    """`import torchvision`. A torchvision built for another torch fails on import (e.g.
    "operator torchvision::nms does not exist"): that raises `UnlearnkitError` naming both versions."""
    try:
        return importlib.import_module("torchvision")
    except (ImportError, RuntimeError, OSError) as exc:
        found = {}
        for name in ("torch", "torchvision"):
            try:
                found[name] = md.version(name)
            except md.PackageNotFoundError:
                found[name] = "not installed"
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        what = ("torchvision is not installed" if found["torchvision"] == "not installed"
                else f"torchvision {found['torchvision']} does not work with torch {found['torch']} ({reason})")
        raise UnlearnkitError(
            f"{what}; their versions must match: install the torchvision release made for torch {found['torch']} "
            "(pytorch.org/get-started/previous-versions)"
        ) from None
