"""attrs validators whose messages name the field and quote the bad value."""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs


class FieldError(ValueError):
    """A validator failure; `field` names the attribute, `message` says what was wrong."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _finite(attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(attribute.name, f"must be finite, got {value!r}")


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """value > 0."""
    _finite(attribute, value)
    if not value > 0:
        raise FieldError(attribute.name, f"must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """value >= 0."""
    _finite(attribute, value)
    if not value >= 0:
        raise FieldError(attribute.name, f"must be >= 0, got {value!r}")


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Validator:
    """low <= value <= high, either end open on request."""
    left, right = ("(" if low_open else "["), (")" if high_open else "]")

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        _finite(attribute, value)
        ok_low = value > low if low_open else value >= low
        ok_high = value < high if high_open else value <= high
        if not (ok_low and ok_high):
            raise FieldError(attribute.name, f"must be in {left}{low}, {high}{right}, got {value!r}")

    return check


def one_of(*choices: str) -> Validator:
    """value is one of `choices`."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise FieldError(attribute.name, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")

    return check
