"""The ref trigger's insert looks each new ref up by index (PostgreSQL).

`events_app_event_refs_add()` registered the refs of other writers with `NOT EXISTS`,
which PostgreSQL plans as an anti join. PL/pgSQL keeps the plan a connection made at
its first insert; made for a 1000-event batch, that plan hashes the whole ref table,
and the connection's every later insert (a single event too) scanned the table again.
A subquery per new row probes the unique (type, ref) index whatever the first insert
was (events_app.partitions.ddl.REF_ADD_FUNCTION, which new tables get). SQLite has no
such trigger.
"""

from django.db import migrations

REFS_ADD = """
CREATE OR REPLACE FUNCTION events_app_event_refs_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventref (event_type_id, ref, event_id)
    SELECT n.event_type_id, n.external_id, n.id FROM new_rows n
    WHERE n.external_id IS NOT NULL AND (
        SELECT r.event_id FROM events_app_eventref r
        WHERE r.event_type_id = n.event_type_id AND r.ref = n.external_id
    ) IS DISTINCT FROM n.id;
    RETURN NULL;
END $$;
"""

REFS_ADD_BEFORE = """
CREATE OR REPLACE FUNCTION events_app_event_refs_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events_app_eventref (event_type_id, ref, event_id)
    SELECT n.event_type_id, n.external_id, n.id FROM new_rows n
    WHERE n.external_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM events_app_eventref r
        WHERE r.event_type_id = n.event_type_id AND r.ref = n.external_id
            AND r.event_id = n.id);
    RETURN NULL;
END $$;
"""


def probe_by_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFS_ADD)


def anti_join(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFS_ADD_BEFORE)


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0018_backfill_event_count_ingested"),
    ]

    operations = [migrations.RunPython(probe_by_index, anti_join)]
