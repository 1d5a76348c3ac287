"""The one check every datetime that Herald stores or filters by goes through.

PostgreSQL keeps a timestamptz in UTC and refuses time-zone offsets of 16 hours
or more; Python's datetime holds years 1-9999 only. A value inside Python's
range whose UTC conversion leaves it (`0001-01-01T00:00:00+01:00`) would be
stored and then be unreadable: every list showing it would fail. So every
datetime that comes in is converted to UTC here, and refused (ValueError with
a reason for the client) when it cannot be.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# PostgreSQL's limit on a time-zone displacement (exclusive).
MAX_UTC_OFFSET = timedelta(hours=16)

OFFSET_OUT_OF_RANGE = "The time-zone offset must be between -15:59 and +15:59."
YEAR_OUT_OF_RANGE = "Out of range: in UTC the datetime must fall in the years 1-9999."


def utc_datetime(value: datetime) -> datetime:
    """`value` in UTC (a naive value is taken as UTC); ValueError if it cannot be stored."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    if offset is not None and abs(offset) >= MAX_UTC_OFFSET:
        raise ValueError(OFFSET_OUT_OF_RANGE)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(YEAR_OUT_OF_RANGE) from None
