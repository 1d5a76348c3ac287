"""Property value types: one small handler class per declared type.

Each type turns an incoming JSON scalar into the canonical text stored in
PropertyRecord.property_value (`to_text`) and turns stored text back into a
typed Python value (`parse`), which the automation engine uses to compare a
number as a number and a datetime as a datetime.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from project.datetimes import utc_datetime


class PropertyType:
    name: ClassVar[str]

    def to_text(self, value: Any) -> str:
        """Canonical text for storage; raises ValueError with a user-facing reason."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """Typed value from stored text; raises ValueError when it does not parse."""
        raise NotImplementedError


class StringType(PropertyType):
    name = "string"

    def to_text(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def parse(self, text: str) -> str:
        return text


class NumberType(PropertyType):
    name = "number"

    def to_text(self, value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError("must be a number, got a boolean")
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("must be a finite number")
            return repr(value) if isinstance(value, float) else str(value)
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"must be a number, got '{value}'") from None
        if not number.is_finite():
            raise ValueError("must be a finite number")
        return str(value).strip()

    def parse(self, text: str) -> Decimal:
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"'{text}' is not a number") from None
        if not number.is_finite():
            raise ValueError(f"'{text}' is not a finite number")
        return number


class BooleanType(PropertyType):
    name = "boolean"
    TRUE = frozenset({"true", "1", "yes"})
    FALSE = frozenset({"false", "0", "no"})

    def to_text(self, value: Any) -> str:
        return "true" if self.parse(str(value)) else "false"

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in self.TRUE:
            return True
        if lowered in self.FALSE:
            return False
        raise ValueError(f"must be true or false, got '{text}'")


class DatetimeType(PropertyType):
    name = "datetime"

    def to_text(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError("must be an ISO 8601 datetime string")
        return self.parse(value).isoformat().replace("+00:00", "Z")

    def parse(self, text: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an ISO 8601 datetime, got '{text}'") from None
        # Stored as text, but compared as a datetime by the workflow engine: a value
        # without a UTC form would fail every evaluation that reads it.
        try:
            return utc_datetime(parsed)
        except ValueError as exc:
            raise ValueError(f"must be a datetime in range, got '{text}': {exc}") from None


PROPERTY_TYPES: dict[str, PropertyType] = {
    handler.name: handler for handler in (StringType(), NumberType(), BooleanType(), DatetimeType())
}
