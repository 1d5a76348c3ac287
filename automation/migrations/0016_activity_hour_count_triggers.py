"""Triggers that count workflow runs and webhook deliveries by the hour (PostgreSQL only).

Statement-level AFTER INSERT / AFTER DELETE triggers with transition tables, as the
event counters' (events_app 0003): one GROUP BY per statement, into the writer's slot
(pg_backend_pid() % 32), groups upserted in hour order. TRUNCATE empties the table's
kind. No UPDATE trigger: only creation is counted (automation.activity says why).
"""

from django.db import migrations

TABLES = (("automation_workflowrun", "run"), ("automation_delivery", "delivery"))

FUNCTIONS = """
CREATE FUNCTION automation_activity_count_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO automation_activityhourcount (kind, hour, slot, created)
    SELECT TG_ARGV[0], date_trunc('hour', created_at, 'UTC'), mod(pg_backend_pid(), 32),
        count(*)
    FROM new_rows GROUP BY 2 ORDER BY 2
    ON CONFLICT (kind, hour, slot)
    DO UPDATE SET created = automation_activityhourcount.created + EXCLUDED.created;
    RETURN NULL;
END $$;

CREATE FUNCTION automation_activity_count_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO automation_activityhourcount (kind, hour, slot, created)
    SELECT TG_ARGV[0], date_trunc('hour', created_at, 'UTC'), mod(pg_backend_pid(), 32),
        -count(*)
    FROM old_rows GROUP BY 2 ORDER BY 2
    ON CONFLICT (kind, hour, slot)
    DO UPDATE SET created = automation_activityhourcount.created + EXCLUDED.created;
    RETURN NULL;
END $$;

CREATE FUNCTION automation_activity_count_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM automation_activityhourcount WHERE kind = TG_ARGV[0];
    RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER {table}_activity_insert AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION automation_activity_count_add('{kind}');
CREATE TRIGGER {table}_activity_delete AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION automation_activity_count_remove('{kind}');
CREATE TRIGGER {table}_activity_truncate AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION automation_activity_count_reset('{kind}');
"""

DROP = """
DROP TRIGGER IF EXISTS {table}_activity_truncate ON {table};
DROP TRIGGER IF EXISTS {table}_activity_delete ON {table};
DROP TRIGGER IF EXISTS {table}_activity_insert ON {table};
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTIONS)
        for table, kind in TABLES:
            schema_editor.execute(TRIGGERS.format(table=table, kind=kind))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for table, _ in TABLES:
            schema_editor.execute(DROP.format(table=table))
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS automation_activity_count_reset();"
            "DROP FUNCTION IF EXISTS automation_activity_count_remove();"
            "DROP FUNCTION IF EXISTS automation_activity_count_add();"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0015_activity_hour_counts"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
