"""Backfill `ingested` with the events stored before it existed (both databases).

Each counter row's `ingested` starts as its `events` (PostgreSQL: the exact counts;
SQLite: one row per type, slot 0, counted from the table). Locks the events table
against writes (SHARE) while it runs, so no insert is counted twice or missed; the
counters are a few rows per event type. Reversing sets them back to 0.
"""

from django.db import migrations

POSTGRESQL = """
LOCK TABLE events_app_event IN SHARE MODE;
UPDATE events_app_eventcount SET ingested = events;
"""

# SQLite: each type's events counted from the table (what 0017's trigger counted since
# is in the table too).
SQLITE = """
INSERT INTO events_app_eventcount (event_type_id, slot, events, ingested)
SELECT event_type_id, 0, 0, count(*) FROM events_app_event WHERE true GROUP BY event_type_id
ON CONFLICT (event_type_id, slot) DO UPDATE SET ingested = excluded.ingested
"""


def backfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE)


def clear(apps, schema_editor):
    schema_editor.execute("UPDATE events_app_eventcount SET ingested = 0")


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0017_event_count_ingested"),
    ]

    operations = [migrations.RunPython(backfill, clear)]
