"""The event object exactly as GET /events/{id} shows it: its fields, in one place.

The API's EventSerializer (events_app.api.serializers) documents these fields and
renders them with `event_payload`; webhook deliveries send the same object
(automation.webhooks); ingestion's insert writes the `EVENT_INPUT_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from events_app.models import Event

# The columns an event is created with (from the request, or derived from it at ingest).
EVENT_INPUT_COLUMNS = (
    "id",
    "event_type_id",
    "customer_id",
    "external_id",
    "secondary_external_id",
    "data",
    "occurred_at",
    "created_at",
)
# What changes as the event is processed and delivered (`status` is `state`'s name).
EVENT_STATE_COLUMNS = ("state", "status", "completed_at", "failed_at", "is_delivered")
# The object's fields in order; only the id is named differently from its column.
_RENAMED = {"id": "event_id"}
EVENT_FIELDS = tuple(_RENAMED.get(c, c) for c in (*EVENT_INPUT_COLUMNS, *EVENT_STATE_COLUMNS))


def _instant(value: datetime | None) -> str | None:
    """ISO 8601 in the current time zone, UTC as `Z` (as DRF renders datetimes)."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _converters() -> tuple[tuple[str, str, Callable[[Any], Any] | None], ...]:
    out: list[tuple[str, str, Callable[[Any], Any] | None]] = []
    for column in (*EVENT_INPUT_COLUMNS, *EVENT_STATE_COLUMNS):
        convert: Callable[[Any], Any] | None = None
        if column != "status":
            internal = Event._meta.get_field(column).get_internal_type()
            if internal == "DateTimeField":
                convert = _instant
            elif internal == "PositiveSmallIntegerField":
                convert = int  # an unsaved event holds the State member
        out.append((_RENAMED.get(column, column), column, convert))
    return tuple(out)


_FIELDS = _converters()


def event_payload(event: Event) -> dict[str, Any]:
    """The event object as GET /events/{id} shows it (also a webhook's body). Plain
    Python, no serializer: it is built for every event a webhook subscribes to."""
    out: dict[str, Any] = {}
    for name, column, convert in _FIELDS:
        value = getattr(event, column)
        out[name] = value if convert is None else convert(value)
    return out
