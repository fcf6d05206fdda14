"""One cattrs converter for every config class, TOML loading, and stable config hashes.

Config classes are frozen, keyword-only attrs classes (`@config_class`). Structuring rejects
unknown keys and reports each failure as `path: message`, e.g.
`$.methods[0].inner_lr: must be > 0, got -1`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import attrs
import cattrs

from unlearnkit.core.errors import ConfigError
from unlearnkit.core.validators import FieldError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(bool, _strict_bool)
_sequences = converter.copy()  # cattrs' own list/tuple structuring, with the strict scalars


def _no_string_sequences(type_: Any) -> Callable[[Any, Any], Any]:
    """cattrs would split "main" into ['m', 'a', 'i', 'n'] for a list field: refuse non-lists."""

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {value!r}")
        return _sequences.structure(value, type_)

    return structure


converter.register_structure_hook_factory(
    lambda t: typing.get_origin(t) in (list, tuple) or t in (list, tuple), _no_string_sequences
)
_FIELD = "\x00"


def config_class(cls: type[T]) -> type[T]:
    """Make `cls` a frozen, keyword-only attrs config class."""
    return attrs.frozen(kw_only=True)(cls)


def _format(exc: BaseException, path: str) -> list[str]:
    if isinstance(exc, FieldError):
        return [f"{path}.{exc.field}: {exc.message}"]
    if isinstance(exc, (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError, ExceptionGroup)):
        lines = []
        for line in cattrs.transform_error(exc, path=path, format_exception=_message):
            message, _, where = line.rpartition(" @ ")
            if message.startswith(_FIELD):  # a validator's FieldError: "\0field\0message"
                _, field, message = message.split(_FIELD, 2)
                where = f"{where}.{field}"
            lines.append(f"{where}: {message}")
        return lines
    return [f"{path}: {exc}"]


def _message(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, FieldError):
        return f"{_FIELD}{exc.field}{_FIELD}{exc.message}"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(map(repr, exc.extra_fields)))}"
    if isinstance(exc, KeyError):
        return "required key missing"
    return str(exc)


def structure_config(cls: type[T], data: Any, path: str = "$") -> T:
    """Build `cls` from plain data, raising `ConfigError` with the path of each bad field."""
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a table of settings, got {type(data).__name__} {data!r}"])
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, FieldError, ValueError, TypeError) as exc:
        raise ConfigError(_format(exc, path)) from None
    except ExceptionGroup as exc:  # validators raising inside cattrs' group
        raise ConfigError(_format(exc, path)) from None


def unstructure_config(config: Any) -> dict[str, Any]:
    """Plain, JSON-able data for a config instance."""
    return converter.unstructure(config)


def config_hash(data: Any) -> str:
    """A stable short hash of JSON-able data or a config instance."""
    if attrs.has(type(data)):
        data = unstructure_config(data)
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, raising `ConfigError` with the file name and position when it is malformed."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a folder; expected a TOML file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: config file cannot be read (permission denied)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: malformed TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a UTF-8 text file"]) from None
