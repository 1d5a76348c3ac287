"""What a valid event is: the one definition, shared by single and batch ingest.

These msgspec Structs validate request bodies on the hot path and also produce
the OpenAPI request components, so the docs cannot drift from the validator.
Semantic checks that need the database (does the event type exist, do the
property records match its definitions) live in events_app.ingestion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from project.api.body import loads_strict

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
PropertyValue = str | int | float | bool


class PropertyRecordIn(msgspec.Struct, forbid_unknown_fields=True):
    property_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    property_value: PropertyValue


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """The `event` object. Name the type by id or key, the customer by id, external id or
    anonymous id (exactly one of the three)."""

    event_type_id: Id | None = None
    event_type: Id | None = None
    customer_id: Id | None = None
    customer_external_id: Ref | None = None
    # A visitor id from before the customer is known: names an anonymous customer,
    # created by the first event that names it (customers.models.Customer.anonymous_id).
    anonymous_id: Ref | None = None
    external_id: Ref | None = None
    secondary_external_id: Ref | None = None
    # An object, or (as the seed shows) a JSON-encoded object in a string.
    data: dict[str, Any] | str = msgspec.field(default_factory=dict)
    # The client's time of the event; naive times are taken as UTC, every time is
    # converted to UTC on decoding (project.api.body, project.datetimes).
    occurred_at: datetime | None = None


class EventCreateIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /events (seed 004)."""

    event: EventIn
    property_records: list[PropertyRecordIn] = msgspec.field(default_factory=list)


MAX_BATCH_EVENTS = 1000
# Counted on the wire, before parsing (see project.api.body.read_body_limited).
MAX_BATCH_BYTES = 256 * 1024


class EventBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /events/batch. Each item is decoded as an `EventCreateIn` on its own,
    so one malformed event is reported in `invalid_events` instead of failing the batch."""

    events: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]


class EventBatchDoc(msgspec.Struct, forbid_unknown_fields=True):
    """The batch body as the API docs show it (same items as POST /events)."""

    events: Annotated[
        list[EventCreateIn],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_BATCH_EVENTS,
            description="1-1000 events, at most 256 KB of body.",
        ),
    ]


def event_data_decode(value: dict[str, Any] | str) -> dict[str, Any]:
    """An event's `data` as an object; ValueError with the reason when it is not one.

    `data` may come as a JSON-encoded string: it is held to the rules of a body
    (no NaN, Infinity or numbers beyond a double's range, no null characters,
    nesting limited), so what is stored is what was sent, never `null` for NaN.
    """
    if isinstance(value, dict):
        return value
    decoded = loads_strict(value) if value.strip() else {}
    if not isinstance(decoded, dict):
        raise ValueError("must be a JSON object")
    return decoded
