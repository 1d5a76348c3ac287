"""What the database would refuse in an event, found before the insert.

A batch is inserted by one statement (events_app.ingest_pg), and PostgreSQL refuses
the whole statement for one value it cannot store: a NUL character in any text
(jsonb and text cannot hold it), a lone surrogate (not UTF-8; the JSON encoder
refuses it before the statement is sent), a time-zone offset beyond +-15:59, a
datetime whose UTC conversion leaves the years 1-9999 (PostgreSQL would store it,
but Python, and so every later read, cannot represent it). Checking each event
here keeps one such event from sinking its batch: it is reported on its own, the
others are stored (events_app.ingestion). The input layer refuses most of these
at the door already; ingestion does not rely on it (workflow actions and other
callers reach it too).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from events_app.schemas import EventCreateIn

NUL = "\x00"


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` as text, or None."""
    if NUL in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_storable(value: str) -> str:
    """`value` with what text_problem refuses replaced by U+FFFD: for keeping a record of
    input that was refused (which may carry exactly those characters)."""
    return _UNSTORABLE.sub("\ufffd", value)


def data_problem(data: Any) -> str | None:
    """Why `data` (decoded JSON) cannot be stored as it is, or None.

    Iterative, so deeply nested data cannot exhaust Python's stack here.
    """
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return f"a string {problem}"
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"a key {problem}"
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON cannot carry NaN or Infinity: the encoder would store null instead.
            return "a number is not finite (NaN or Infinity)"
    return None


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC); ValueError when it leaves the years 1-9999.

    Stored in UTC, the offset the client gave (up to +-23:59 in Python) never
    reaches PostgreSQL, which refuses offsets beyond +-15:59.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "is out of range: its UTC time must fall within the years 1-9999"
        ) from None


def event_problems(item: EventCreateIn) -> dict[str, list[str]]:
    """Each field of `item` the database could not store, with the reason; `data`
    is checked once decoded (`data_problem`).

    Runs before the reference read, which sends the item's ids and keys to the
    database too (a NUL there would fail the read of the whole batch).
    """
    errors: dict[str, list[str]] = {}
    event = item.event
    for name in (
        "event_type_id",
        "event_type",
        "customer_id",
        "customer_external_id",
        "anonymous_id",
        "external_id",
        "secondary_external_id",
    ):
        value = getattr(event, name)
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                errors[f"event.{name}"] = [f"{name} {problem}."]
    if event.occurred_at is not None:
        try:
            utc_instant(event.occurred_at)
        except ValueError as exc:
            errors["event.occurred_at"] = [f"occurred_at {exc}."]
    for position, record in enumerate(item.property_records):
        for name in ("property_id", "property_value"):
            value = getattr(record, name)
            problem = text_problem(value) if isinstance(value, str) else None
            if problem:
                errors[f"property_records[{position}].{name}"] = [f"{name} {problem}."]
    return errors
