"""Partition events and their property records by month of created_at (PostgreSQL).

PostgreSQL: each table is rebuilt as a partitioned table (events_app.partitions.ddl:
one partition per month that holds rows, the current month and two ahead; no default
partition since 0011), its rows copied over -- the records with their
event's created_at -- and its constraints, indexes and triggers created again. The
database's primary keys become (id, created_at), unique constraints gain created_at,
and the refs move to EventRef (filled here; the ingest statement and triggers keep
it from then on). One transaction holding exclusive locks on both tables: writes and
reads of events wait until it commits (docs/operations.md has the time it takes per
million rows). Reversing rebuilds the tables unpartitioned.

SQLite keeps one table of each: only the records' created_at is filled.

Schema and data in one migration, unlike the house rule: converting a table is both
at once (the rows are copied into the new table's shape), and splitting it would
rewrite every property record twice.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.utils import timezone

from events_app.partitions.ddl import REF_TRIGGERS_DROP, table_rebuild
from events_app.partitions.months import (
    EVENT_TABLE,
    RECORD_TABLE,
    Month,
    months_between,
)

# How many months past the current one exist ahead of time (events_app.partitions
# keeps it so from then on).
AHEAD = 2

EVENT_ROWS = f"SELECT * FROM {EVENT_TABLE}"  # noqa: S608
RECORD_COLUMNS = "id, event_id, property_id, property_value"


def _months(cursor: Any) -> list[Month]:
    """Every month that holds events, and the current month with the months ahead."""
    cursor.execute(
        f"""SELECT DISTINCT date_trunc('month', created_at, 'UTC') AS month
        FROM {EVENT_TABLE} ORDER BY month"""  # noqa: S608
    )
    held = {Month.of(row[0]) for row in cursor.fetchall()}
    now = Month.of(timezone.now())
    return sorted(held | set(months_between(now, now.plus(AHEAD))))


def partition(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor != "postgresql":
            cursor.execute(
                f"""UPDATE {RECORD_TABLE} SET created_at = (
                    SELECT e.created_at FROM {EVENT_TABLE} e WHERE e.id = event_id)"""  # noqa: S608
            )
            return
        cursor.execute(f"LOCK TABLE {EVENT_TABLE}, {RECORD_TABLE} IN ACCESS EXCLUSIVE MODE")
        # Without its foreign key while filled: re-adding it checks every row in one
        # join, where the deferred key would check them one by one at the commit.
        cursor.execute(
            """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = 'events_app_eventref'::regclass AND contype = 'f'"""
        )
        keys = cursor.fetchall()
        for name, _ in keys:
            cursor.execute(f'ALTER TABLE events_app_eventref DROP CONSTRAINT "{name}"')
        cursor.execute(
            f"""INSERT INTO events_app_eventref (event_type_id, ref, event_id)
            SELECT event_type_id, external_id, id FROM {EVENT_TABLE}
            WHERE external_id IS NOT NULL"""  # noqa: S608
        )
        for name, definition in keys:
            cursor.execute(f'ALTER TABLE events_app_eventref ADD CONSTRAINT "{name}" {definition}')
        months = _months(cursor)
        # Records first: their rows join the events table for created_at.
        table_rebuild(
            cursor,
            RECORD_TABLE,
            months=months,
            rows=f"""({RECORD_COLUMNS}, created_at)
            SELECT r.id, r.event_id, r.property_id, r.property_value, e.created_at
            FROM {RECORD_TABLE} r JOIN {EVENT_TABLE} e ON e.id = r.event_id""",  # noqa: S608
        )
        table_rebuild(cursor, EVENT_TABLE, months=months, rows=EVENT_ROWS)


def unpartition(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {EVENT_TABLE}, {RECORD_TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(REF_TRIGGERS_DROP)
        table_rebuild(
            cursor,
            RECORD_TABLE,
            months=None,
            rows=f"({RECORD_COLUMNS}, created_at) SELECT {RECORD_COLUMNS}, created_at FROM {RECORD_TABLE}",  # noqa: S608
        )
        table_rebuild(cursor, EVENT_TABLE, months=None, rows=EVENT_ROWS)
        cursor.execute("DELETE FROM events_app_eventref")


class Migration(migrations.Migration):
    dependencies = [("events_app", "0009_event_refs_and_record_times")]

    operations = [
        # Forward: convert (PostgreSQL) or fill created_at (SQLite), then require it.
        # Backward: the partitioning goes first (a partition key column stays NOT NULL).
        migrations.RunPython(partition, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="propertyrecord",
            name="created_at",
            field=models.DateTimeField(),
        ),
        migrations.RunPython(migrations.RunPython.noop, unpartition),
    ]
