"""A customer's events for privacy requests (customers.privacy): hooks registered in
customers.hooks (EventsAppConfig.ready()), since customers never imports events_app.

- export: every event with its property records.
- erase, before customer_delete's cascade: the customers' property records, one month
  partition at a time, then their events. The cascade would delete the records with
  one statement joined to the events by `event_id` alone, which PostgreSQL plans over
  every partition of the records (a hash of the customer's events probed by a scan of
  all the records, tens of millions of rows for one person's). Here each statement
  names the month on both sides (a record carries its event's created_at, the
  partition key), so it reaches one partition of each table, and looks the month's
  event ids up in the records' (event_id, …) index, in id order. Once the events are
  gone the cascade's statements that go through them find nothing without scanning.

  It is registered to run after the other erase hooks (order 1), so that any of them
  may still read the person's events.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connection

from events_app.models import Event, PropertyRecord
from events_app.partitions.months import EVENT_TABLE, RECORD_TABLE, Month, months_between
from events_app.payloads import event_payload


def customer_events_export(customer_id: str) -> Iterator[dict[str, Any]]:
    """Every event of the customer as GET /events/{id} shows it, oldest first, each with
    its property records; read in chunks through event_customer_idx (each chunk's
    records prefetched by one query), yielded one at a time."""
    events = (
        Event.objects.filter(customer_id=customer_id)
        .order_by("created_at", "id")
        .prefetch_related("property_records")
    )
    for event in events.iterator(chunk_size=2000):
        yield {
            **event_payload(event),
            "property_records": [
                {"property_id": r.property_id, "property_value": r.property_value}
                for r in event.property_records.all()
            ],
        }


def _month_windows(customer_ids: list[str]) -> list[tuple[datetime, datetime]]:
    """[start, end) of each month from the customers' first event to their last; every
    event of theirs is in one of them, whether its month has a partition or the default
    partition holds it. A query per customer: with one customer id PostgreSQL reads the
    first and the last entry of event_customer_idx in each partition (with a list it
    would aggregate all of them)."""
    first: datetime | None = None
    last: datetime | None = None
    with connection.cursor() as cursor:
        for customer_id in customer_ids:
            cursor.execute(
                f"SELECT min(created_at), max(created_at) FROM {EVENT_TABLE} "  # noqa: S608
                "WHERE customer_id = %s",
                [customer_id],
            )
            low, high = cursor.fetchone()
            if low is not None:
                first = low if first is None else min(first, low)
                last = high if last is None else max(last, high)
    if first is None or last is None:
        return []
    return [(m.start, m.end) for m in months_between(Month.of(first), Month.of(last))]


def customer_events_erase(customer_ids: list[str]) -> dict[str, int]:
    """The erase hook: delete the customers' property records a month at a time, then
    their events (see the module docstring). PostgreSQL only: elsewhere the cascade's
    statements are the right ones. A fixed number of statements per month partition,
    whatever the number of rows; nothing is read into this process."""
    if connection.vendor != "postgresql":
        return {}
    windows = _month_windows(customer_ids)
    if not windows:
        return {}
    records = 0
    with connection.cursor() as cursor:
        for start, end in windows:
            bounds, params = _window("created_at", start, end)
            cursor.execute(
                f"DELETE FROM {RECORD_TABLE} WHERE {bounds} "  # noqa: S608
                f"AND event_id = ANY(ARRAY(SELECT id FROM {EVENT_TABLE} "
                f"WHERE customer_id = ANY(%s) AND {bounds}))",
                [*params, customer_ids, *params],
            )
            records += cursor.rowcount
        # One statement: the events' counter and reference triggers run once.
        cursor.execute(
            f"DELETE FROM {EVENT_TABLE} WHERE customer_id = ANY(%s)",  # noqa: S608
            [customer_ids],
        )
        events = cursor.rowcount
    counts = {PropertyRecord._meta.label: records, Event._meta.label: events}
    return {label: n for label, n in counts.items() if n}


def _window(column: str, start: datetime, end: datetime) -> tuple[str, list[Any]]:
    """SQL `start <= column < end` and its parameters."""
    return f"{column} >= %s AND {column} < %s", [start, end]
