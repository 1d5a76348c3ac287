"""Keeping the month partitions of events (PostgreSQL): created ahead, dropped by retention.

The scheduler's periodic job (`partitions_maintain`, registered in EventsAppConfig)
creates the partitions of the current month and the months ahead before any event
needs them, and -- when HERALD_EVENT_RETENTION is set -- drops the months entirely
older than it. Several schedulers may run it at once: each run takes one advisory
lock for its transaction, so they take turns and the second finds nothing to do.

There is no default partition (it would keep PostgreSQL from reading the months in
order): a writer that names a month without partitions creates them first
(events_app.partitions.ondemand), so an insert never fails for want of one.

Nothing here runs on SQLite: one table, nothing to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import isodate
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from events_app.partitions.ddl import is_partitioned, month_partition_create
from events_app.partitions.months import EVENT_TABLE, RECORD_TABLE, Month, months_between
from events_app.partitions.ondemand import LOCK as _LOCK
from events_app.partitions.ondemand import months_created, months_forget
from events_app.retention_hooks import events_dropped

# Months past the current one whose partitions exist ahead of time: the job may
# stop for that long before a writer has to create a month on demand.
AHEAD_MONTHS = 2


@dataclass(frozen=True, slots=True)
class ExpiredMonth:
    """A month whose partitions retention drops, with what they hold."""

    month: Month
    events: int
    property_records: int

    def describe(self) -> str:
        return (
            f"{self.month}: {self.events:,} events and {self.property_records:,} property "
            f"records ({self.month.partition(EVENT_TABLE)}, {self.month.partition(RECORD_TABLE)})"
        )


def retention_setting() -> Any:
    """HERALD_EVENT_RETENTION parsed (an ISO 8601 duration), or None: keep forever."""
    value = getattr(settings, "HERALD_EVENT_RETENTION", "") or ""
    return retention_parse(value) if value else None


def retention_parse(value: str) -> Any:
    try:
        duration = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ImproperlyConfigured(
            f"HERALD_EVENT_RETENTION must be an ISO 8601 duration such as P13M, not {value!r}."
        ) from exc
    if not isinstance(duration, isodate.Duration) and duration.total_seconds() <= 0:
        raise ImproperlyConfigured("HERALD_EVENT_RETENTION must be a positive duration.")
    return duration


def _active() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        return is_partitioned(cursor)


def month_partitions() -> list[Month]:
    """The months that have partitions, oldest first."""
    prefix = f"{EVENT_TABLE}_p"
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass""",
            [EVENT_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = []
    for name in names:
        if name.startswith(prefix):
            year, month = name[len(prefix) :].split("_")
            months.append(Month(int(year), int(month)))
    return sorted(months)


def partitions_ensure(*, now: datetime, since: datetime | None = None) -> list[Month]:
    """Create the partitions of the current month, the AHEAD_MONTHS after it, and of
    the months from `since` (a bulk load of past events); return the months created."""
    if not _active():
        return []
    created: list[Month] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(_LOCK))
        current = Month.of(now)
        first = Month.of(since) if since is not None else current
        for month in months_between(first, current.plus(AHEAD_MONTHS)):
            if month_partition_create(cursor, month):
                created.append(month)
        months_created(created)
    return created


def retention_cutoff(*, now: datetime, retention: Any) -> datetime:
    """Events created before this instant are past retention."""
    cutoff: datetime = now - retention
    return cutoff


def _expired_months(*, now: datetime, retention: Any) -> list[Month]:
    if not _active():
        return []
    cutoff = retention_cutoff(now=now, retention=retention)
    return [month for month in month_partitions() if month.end <= cutoff]


def _counted(cursor: Any, month: Month) -> ExpiredMonth:
    counts = []
    for table in (EVENT_TABLE, RECORD_TABLE):
        cursor.execute(f"SELECT count(*) FROM {month.partition(table)}")  # noqa: S608
        counts.append(int(cursor.fetchone()[0]))
    return ExpiredMonth(month, *counts)


def retention_expired(*, now: datetime, retention: Any) -> list[ExpiredMonth]:
    """The months entirely older than `retention`, with what their partitions hold:
    what a run of retention would drop (the dry run; nothing is locked or changed)."""
    with connection.cursor() as cursor:
        return [_counted(cursor, m) for m in _expired_months(now=now, retention=retention)]


def _month_drop(cursor: Any, month: Month) -> ExpiredMonth:
    """Detach and drop one month's partitions, taking its events off the exact counts.

    1. Lock both partitions against writes (a concurrent delete would be counted
       twice), reads go on.
    2. Subtract the month's events per type from the counters (into this
       connection's slot, as the delete trigger does), and drop the month's hourly
       counters.
    3. Detach and drop: no row trigger fires, so deliveries, workflow runs and refs
       of these events stay (docs/operations.md).
    """
    events, records = month.partition(EVENT_TABLE), month.partition(RECORD_TABLE)
    cursor.execute(f"LOCK TABLE {events}, {records} IN SHARE MODE")
    dropped = _counted(cursor, month)
    cursor.execute(
        f"""INSERT INTO events_app_eventcount (event_type_id, slot, events)
        SELECT event_type_id, mod(pg_backend_pid(), 32), -count(*)
        FROM {events} GROUP BY event_type_id ORDER BY event_type_id
        ON CONFLICT (event_type_id, slot)
        DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events"""  # noqa: S608
    )
    # The hourly counters of the month held exactly this partition's events.
    cursor.execute(
        "DELETE FROM events_app_eventhourcount WHERE hour >= %s AND hour < %s",
        [month.start, month.end],
    )
    # PostgreSQL refuses to drop a table with deferred checks still pending on it: run
    # them now (the job's own transaction has none; a caller's may have written rows).
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(f"ALTER TABLE {EVENT_TABLE} DETACH PARTITION {events}")
    cursor.execute(f"ALTER TABLE {RECORD_TABLE} DETACH PARTITION {records}")
    cursor.execute(f"DROP TABLE {events}, {records}")
    return dropped


def retention_apply(*, now: datetime, retention: Any) -> list[ExpiredMonth]:
    """Drop the months entirely older than `retention` (events and property records),
    one transaction per month; return what was dropped."""
    dropped = []
    for month in _expired_months(now=now, retention=retention):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(_LOCK))
            if month not in month_partitions():
                continue  # another run dropped it meanwhile
            dropped.append(_month_drop(cursor, month))
            # What was computed from these events (segments) is re-evaluated after commit.
            events_dropped(created_from=month.start, created_to=month.end)
        months_forget([month])
    return dropped


def partitions_maintain(now: datetime) -> int:
    """The periodic job: partitions ahead, then retention if configured. Returns the
    number of months created and dropped."""
    created = partitions_ensure(now=now)
    retention = retention_setting()
    dropped = retention_apply(now=now, retention=retention) if retention is not None else []
    return len(created) + len(dropped)
