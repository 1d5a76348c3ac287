"""An index for the admin's case-insensitive prefix search on event refs (PostgreSQL).

The events changelist searches `external_id` with Django's `istartswith`, which
PostgreSQL runs as `UPPER(external_id::text) LIKE UPPER('term%')`
(events_app.selectors.event_search); a btree on that expression with
`text_pattern_ops` turns the prefix into an index range whatever the collation.
event_external_idx serves exact refs and sorting only.

The events table is partitioned by month: the index is declared on the parent alone
(`ON ONLY`, invalid until every partition has its own), then built CONCURRENTLY on
each partition and attached, so ingestion goes on while it is built. Partitions made
later (events_app.partitions) get it from the parent. SQLite keeps a plain LIKE.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

NAME = "event_external_upper_idx"
TABLE = "events_app_event"
EXPRESSION = "upper(external_id::text) text_pattern_ops"


def _partitions(cursor: Any) -> list[str]:
    cursor.execute(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass ORDER BY c.relname""",
        [TABLE],
    )
    return [row[0] for row in cursor.fetchall()]


def create(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        partitions = _partitions(cursor)
        if not partitions:  # not partitioned (yet): one plain index
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON {TABLE} ({EXPRESSION})")
            return
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON ONLY {TABLE} ({EXPRESSION})")
        for partition in partitions:
            child = f"{partition}_ext_upper_idx"
            cursor.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {child} ON {partition} ({EXPRESSION})"
            )
            cursor.execute(
                """SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass
                AND inhparent = %s::regclass""",
                [child, NAME],
            )
            if cursor.fetchone() is None:
                cursor.execute(f"ALTER INDEX {NAME} ATTACH PARTITION {child}")


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    # Dropping the parent's index drops every partition's.
    schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("events_app", "0014_event_api_client")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
