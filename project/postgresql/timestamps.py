"""Reading a timestamptz that Python cannot represent, without failing the read.

PostgreSQL stores instants from 4713 BC to 294276 AD, and `infinity`; Python's
datetime holds the years 1-9999 only, so psycopg refuses to load anything else and
the whole query fails: one such row made every list that contains it answer 500.
Herald validates every datetime it stores (in UTC, years 1-9999), but a row written
before that validation, or by hand, may hold one. Such a value reads as the nearest
instant Python can hold (0001-01-01T00:00:00Z or 9999-12-31T23:59:59.999999Z): the
row shows, its field pinned to the edge of the calendar, and workers go on (the
workflow runner also refuses to evaluate such an event, saying why).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

import psycopg
from django.db.backends.postgresql.psycopg_any import BaseTzLoader

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


class ClampingTzLoader(BaseTzLoader):  # type: ignore[misc]
    """Django's timestamptz loader, clamping what Python cannot represent."""

    def load(self, data: Any) -> datetime:
        try:
            loaded: datetime = super().load(data)
        except psycopg.DataError:
            text = bytes(data)
            # "... BC" and "-infinity" lie before year 1; the rest after year 9999.
            edge = EARLIEST if text.endswith(b" BC") or text.startswith(b"-") else LATEST
            return edge.replace(tzinfo=self.timezone)
        return loaded


def clamping_loader_register(connection: psycopg.Connection[Any], timezone: tzinfo | None) -> None:
    """Read the timestamptz columns of `connection` with ClampingTzLoader.

    Its `timezone` is the connection's, as Django's own loader has it, so Django
    keeps it for every cursor (it replaces a loader whose time zone differs).
    """

    class Loader(ClampingTzLoader):
        pass

    Loader.timezone = timezone
    connection.adapters.register_loader("timestamptz", Loader)
