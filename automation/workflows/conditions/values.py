"""The values conditions compare: coercion to the comparison's type, and paths.

A value that is missing or cannot be coerced is MISSING (never an exception), so an
operator simply does not match it (automation.workflows.conditions.operators).
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from events_app.properties import PROPERTY_TYPES


class _Missing:
    """The value of a path that is not there (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def to_decimal(value: Any) -> Any:
    """Decimal of a number or numeric string, or MISSING."""
    if isinstance(value, bool):
        return MISSING
    if isinstance(value, Decimal):
        return value if value.is_finite() else MISSING
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return MISSING
        return number if number.is_finite() else MISSING
    return MISSING


def to_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return PROPERTY_TYPES["datetime"].parse(value)
        except ValueError:
            return MISSING
    return MISSING


def to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return PROPERTY_TYPES["boolean"].parse(str(value))
        except ValueError:
            return MISSING
    return MISSING


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if _is_number(value):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, str):
        return "str"
    return "other"


_SAMPLES: dict[str, Any] = {
    "bool": True,
    "number": Decimal(0),
    "datetime": datetime(2000, 1, 1),  # noqa: DTZ001 - only its type matters
    "str": "",
}


@functools.lru_cache(maxsize=8192)
def _coerce_cached(kind: str, expected: Any, expected_type: str) -> Any:
    return _coerce(_SAMPLES[kind], expected)


def coerce_like(actual: Any, expected: Any) -> Any:
    """`expected` converted to the type of `actual`; memoized (rules repeat their values)."""
    kind = _kind(actual)
    if kind == "other" or expected is None or isinstance(expected, list | dict):
        return _coerce(actual, expected)
    # The type is part of the key: True == 1 == 1.0 must not share an entry.
    return _coerce_cached(kind, expected, type(expected).__name__)


def _coerce(actual: Any, expected: Any) -> Any:
    """`expected` converted to the type of `actual` (the data decides the type).

    A number compares as a number, a datetime as a datetime, a boolean as a
    boolean; a string compares with the expected value's text.
    """
    if expected is None or actual is None:
        return expected
    if isinstance(actual, bool):
        return to_bool(expected)
    if _is_number(actual):
        return to_decimal(expected)
    if isinstance(actual, datetime):
        return to_datetime(expected)
    if isinstance(actual, str):
        if isinstance(expected, bool):
            return "true" if expected else "false"
        if isinstance(expected, str | int | float | Decimal):
            return str(expected)
        return MISSING
    return expected


def normalize(actual: Any) -> Any:
    """Numbers compare as Decimal so 100 == 100.0 == Decimal('100')."""
    if _is_number(actual):
        return to_decimal(actual)
    return actual


def resolve_path(root: Any, segments: tuple[str, ...]) -> Any:
    """Walk objects by key and lists by index; a missing step gives MISSING."""
    current = root
    for segment in segments:
        if isinstance(current, dict):
            if segment not in current:
                return MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current
