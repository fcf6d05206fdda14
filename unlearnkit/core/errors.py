"""Error types. Every error a user can cause derives from `UnlearnkitError`."""

from __future__ import annotations


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
    """Training or unlearning produced a NaN or infinite loss, or a model whose outputs are not finite."""


class NothingRemovedError(UnlearnkitError):
    """An unlearning run returned the weights it was given: it removed nothing."""
