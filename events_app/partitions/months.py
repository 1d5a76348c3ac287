"""Month arithmetic of the event partitions (UTC months), and the time window of an id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from project.ids import PUBLIC_ID_LENGTH

# The tables partitioned by month of created_at (PostgreSQL only), parent first: a
# month's partitions are created, detached and dropped together.
EVENT_TABLE = "events_app_event"
RECORD_TABLE = "events_app_propertyrecord"
PARTITIONED_TABLES = (EVENT_TABLE, RECORD_TABLE)

# How far from the time in an event's id its created_at may be for a by-id lookup to
# look in the month partitions around that time only. Ingestion takes both from one
# clock read; a row written otherwise is still found (the lookup falls back).
ID_WINDOW = timedelta(days=1)


class Month(NamedTuple):
    year: int
    month: int

    @classmethod
    def of(cls, moment: datetime) -> Month:
        utc = moment.astimezone(UTC)
        return cls(utc.year, utc.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Month:
        return self.plus(1)

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def partition(self, table: str) -> str:
        """The partition's table name, e.g. events_app_event_p2026_12."""
        return f"{table}_p{self.year:04d}_{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months_between(first: Month, last: Month) -> list[Month]:
    """first .. last inclusive (empty when last < first)."""
    months: list[Month] = []
    month = first
    while month <= last:
        months.append(month)
        month = month.next()
    return months


def default_partition(table: str) -> str:
    return f"{table}_default"


def id_created_window(event_id: str) -> tuple[datetime, datetime] | None:
    """The created_at range an event with this id was almost surely stored in (the
    first 12 hex digits of an id are its creation milliseconds), or None for a
    string that is not an id."""
    if len(event_id) != PUBLIC_ID_LENGTH:
        return None
    try:
        millis = int(event_id[:12], 16)
        moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return moment - ID_WINDOW, moment + ID_WINDOW
