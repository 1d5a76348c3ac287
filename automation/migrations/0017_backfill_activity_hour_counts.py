"""Count by hour the workflow runs and webhook deliveries that existed before the
triggers (PostgreSQL only).

Reads both tables once (a GROUP BY each) while their writes wait (SHARE lock), so the
result is exact whatever the triggers counted since 0015.
"""

from django.db import migrations

BACKFILL = """
LOCK TABLE automation_workflowrun, automation_delivery IN SHARE MODE;
DELETE FROM automation_activityhourcount;
INSERT INTO automation_activityhourcount (kind, hour, slot, created)
SELECT 'run', date_trunc('hour', created_at, 'UTC'), 0, count(*)
FROM automation_workflowrun GROUP BY 2;
INSERT INTO automation_activityhourcount (kind, hour, slot, created)
SELECT 'delivery', date_trunc('hour', created_at, 'UTC'), 0, count(*)
FROM automation_delivery GROUP BY 2;
"""


def backfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKFILL)


def clear(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DELETE FROM automation_activityhourcount")


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0016_activity_hour_count_triggers"),
    ]

    operations = [migrations.RunPython(backfill, clear)]
