"""Triggers that keep events_app_eventcount exact (PostgreSQL only).

Statement-level AFTER INSERT / AFTER DELETE triggers read transition tables,
so one COPY or bulk insert of a million rows costs one GROUP BY, not a
million row triggers. A row-level AFTER UPDATE trigger fires only when an
event changes type. TRUNCATE empties the counters. Each connection adds into
slot pg_backend_pid() % 32 (EVENT_COUNT_SLOTS), so concurrent writers do not
queue on one row; groups are upserted in event_type_id order so two
statements never lock the same counter rows in opposite orders.
SQLite has no such triggers: the list falls back to COUNT(*) there.
"""

from django.db import migrations


FORWARD = """
CREATE FUNCTION events_app_event_count_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT event_type_id, mod(pg_backend_pid(), 32), count(*)
    FROM new_rows GROUP BY event_type_id ORDER BY event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;
    RETURN NULL;
END $$;

CREATE FUNCTION events_app_event_count_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT event_type_id, mod(pg_backend_pid(), 32), -count(*)
    FROM old_rows GROUP BY event_type_id ORDER BY event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;
    RETURN NULL;
END $$;

CREATE FUNCTION events_app_event_count_retype() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT t.event_type_id, mod(pg_backend_pid(), 32), t.delta
    FROM (VALUES (OLD.event_type_id, -1), (NEW.event_type_id, 1)) AS t(event_type_id, delta)
    ORDER BY t.event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;
    RETURN NULL;
END $$;

CREATE FUNCTION events_app_event_count_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events_app_eventcount;
    RETURN NULL;
END $$;

CREATE TRIGGER events_app_event_count_insert
    AFTER INSERT ON events_app_event
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_add();

CREATE TRIGGER events_app_event_count_delete
    AFTER DELETE ON events_app_event
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_remove();

CREATE TRIGGER events_app_event_count_update
    AFTER UPDATE OF event_type_id ON events_app_event
    FOR EACH ROW WHEN (OLD.event_type_id IS DISTINCT FROM NEW.event_type_id)
    EXECUTE FUNCTION events_app_event_count_retype();

CREATE TRIGGER events_app_event_count_truncate
    AFTER TRUNCATE ON events_app_event
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_reset();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS events_app_event_count_truncate ON events_app_event;
DROP TRIGGER IF EXISTS events_app_event_count_update ON events_app_event;
DROP TRIGGER IF EXISTS events_app_event_count_delete ON events_app_event;
DROP TRIGGER IF EXISTS events_app_event_count_insert ON events_app_event;
DROP FUNCTION IF EXISTS events_app_event_count_reset();
DROP FUNCTION IF EXISTS events_app_event_count_retype();
DROP FUNCTION IF EXISTS events_app_event_count_remove();
DROP FUNCTION IF EXISTS events_app_event_count_add();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0002_event_counts_table"),
    ]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
