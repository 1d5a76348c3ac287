"""Count by hour the events that existed before the hourly counters (PostgreSQL only).

Reads every event once (a GROUP BY over the whole table) while writes wait (SHARE
lock), so the result is exact whatever the triggers counted since 0012.
"""

from django.db import migrations

BACKFILL = """
LOCK TABLE events_app_event IN SHARE MODE;
DELETE FROM events_app_eventhourcount;
INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
SELECT date_trunc('hour', created_at, 'UTC'), event_type_id, 0, count(*)
FROM events_app_event GROUP BY 1, 2;
"""


def backfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKFILL)


def clear(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DELETE FROM events_app_eventhourcount")


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0012_event_hour_count_triggers"),
    ]

    operations = [migrations.RunPython(backfill, clear)]
