"""The event counters' `ingested` column: events ever stored, never decremented.

`herald_events_ingested_total` is a Prometheus counter, so it may only go up; the
exact `events` column goes down with deletes and retention. PostgreSQL: the insert
trigger's function (migration 0003, with the hourly counts of 0012) now adds into both
columns; the delete, retype
and retention paths write `events` only (the column's database default fills
`ingested` with 0 in the rows they create). SQLite (no counter triggers): a row
trigger adds into `ingested` alone. The counters lose their foreign key's database
constraint so that the rows of a deleted event type can stay (and the total with
them). Counting the events stored before this migration is 0012's work.
"""

from django.db import migrations, models

COUNT_ADD = """
CREATE OR REPLACE FUNCTION events_app_event_count_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events, ingested)
    SELECT event_type_id, mod(pg_backend_pid(), 32), count(*), count(*)
    FROM new_rows GROUP BY event_type_id ORDER BY event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events,
        ingested = events_app_eventcount.ingested + EXCLUDED.ingested;
    INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
    SELECT date_trunc('hour', created_at, 'UTC'), event_type_id, mod(pg_backend_pid(), 32),
        count(*)
    FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, event_type_id, slot)
    DO UPDATE SET events = events_app_eventhourcount.events + EXCLUDED.events;
    RETURN NULL;
END $$;
"""

COUNT_ADD_BEFORE = """
CREATE OR REPLACE FUNCTION events_app_event_count_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events)
    SELECT event_type_id, mod(pg_backend_pid(), 32), count(*)
    FROM new_rows GROUP BY event_type_id ORDER BY event_type_id
    ON CONFLICT (event_type_id, slot)
    DO UPDATE SET events = events_app_eventcount.events + EXCLUDED.events;
    INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
    SELECT date_trunc('hour', created_at, 'UTC'), event_type_id, mod(pg_backend_pid(), 32),
        count(*)
    FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, event_type_id, slot)
    DO UPDATE SET events = events_app_eventhourcount.events + EXCLUDED.events;
    RETURN NULL;
END $$;
"""

SQLITE_TRIGGER = """
CREATE TRIGGER events_app_event_ingested AFTER INSERT ON events_app_event
FOR EACH ROW BEGIN
    INSERT INTO events_app_eventcount (event_type_id, slot, events, ingested)
    VALUES (NEW.event_type_id, 0, 0, 1)
    ON CONFLICT (event_type_id, slot) DO UPDATE SET ingested = ingested + 1;
END
"""


def create_counting(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(COUNT_ADD)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER)


def drop_counting(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(COUNT_ADD_BEFORE)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS events_app_event_ingested")


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0016_drop_default_partitions"),
    ]

    operations = [
        migrations.AddField(
            model_name="eventcount",
            name="ingested",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="eventcount",
            name="event_type",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.DO_NOTHING,
                related_name="+",
                to="events_app.eventtype",
            ),
        ),
        migrations.RunPython(create_counting, drop_counting),
    ]
