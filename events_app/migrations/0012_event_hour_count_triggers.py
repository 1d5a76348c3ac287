"""The event counters' trigger functions also count by hour (PostgreSQL only).

The triggers of 0003 (recreated on the partitioned table by 0010) stay as they are;
their functions are replaced so that the same statement-level GROUP BY over the
transition table also upserts into events_app_eventhourcount, per (hour in UTC,
type), into the same slot. Backwards, the functions of 0003 come back.
"""

from django.db import migrations

# Shared by the insert and delete functions: add `sign` times each group of `rows`.
_ADD = """
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT event_type_id, mod(pg_backend_pid(), 32), {sign}count(*)
    FROM {rows} GROUP BY event_type_id ORDER BY event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;
"""
_ADD_HOURS = """
    INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
    SELECT date_trunc('hour', created_at, 'UTC'), event_type_id, mod(pg_backend_pid(), 32),
        {sign}count(*)
    FROM {rows} GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, event_type_id, slot)
    DO UPDATE SET events = events_app_eventhourcount.events + EXCLUDED.events;
"""


def _functions(with_hours: bool) -> str:
    def body(sign: str, rows: str) -> str:
        hours = _ADD_HOURS.format(sign=sign, rows=rows) if with_hours else ""
        return _ADD.format(sign=sign, rows=rows) + hours

    retype_hours = (
        """
    INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
    SELECT date_trunc('hour', OLD.created_at, 'UTC'), t.event_type_id,
        mod(pg_backend_pid(), 32), t.delta
    FROM (VALUES (OLD.event_type_id, -1), (NEW.event_type_id, 1)) AS t(event_type_id, delta)
    ORDER BY t.event_type_id
    ON CONFLICT (hour, event_type_id, slot)
    DO UPDATE SET events = events_app_eventhourcount.events + EXCLUDED.events;
"""
        if with_hours
        else ""
    )
    reset_hours = "    DELETE FROM events_app_eventhourcount;\n" if with_hours else ""
    return f"""
CREATE OR REPLACE FUNCTION events_app_event_count_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN{body("", "new_rows")}    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION events_app_event_count_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN{body("-", "old_rows")}    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION events_app_event_count_retype() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT t.event_type_id, mod(pg_backend_pid(), 32), t.delta
    FROM (VALUES (OLD.event_type_id, -1), (NEW.event_type_id, 1)) AS t(event_type_id, delta)
    ORDER BY t.event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;{retype_hours}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION events_app_event_count_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events_app_eventcount;
{reset_hours}    RETURN NULL;
END $$;
"""  # noqa: S608 (constants only)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_functions(with_hours=True))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_functions(with_hours=False))


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0011_activity_rollups"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
