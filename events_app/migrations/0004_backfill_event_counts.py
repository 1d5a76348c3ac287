"""Count the events that existed before the triggers (PostgreSQL only).

Writes are blocked (SHARE lock) while the counters are rebuilt from scratch,
so the result is exact whatever the triggers counted since 0003.
"""

from django.db import migrations

BACKFILL = """
LOCK TABLE events_app_event IN SHARE MODE;
DELETE FROM events_app_eventcount;
INSERT INTO events_app_eventcount (event_type_id, slot, events)
SELECT event_type_id, 0, count(*) FROM events_app_event GROUP BY event_type_id;
"""


def backfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKFILL)


def clear(apps, schema_editor):
    # Backwards the counters are dropped with their table (0002); clearing
    # here keeps a re-run of 0004 from double counting.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DELETE FROM events_app_eventcount")


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0003_event_count_triggers"),
    ]

    operations = [migrations.RunPython(backfill, clear)]
