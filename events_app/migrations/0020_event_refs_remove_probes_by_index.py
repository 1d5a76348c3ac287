"""The ref trigger's delete probes the unique (type, ref) index per deleted event
(PostgreSQL).

`events_app_event_refs_remove()` joined the deleted events (a transition table) to the
ref table as the planner chose: for a large delete, a customer's million events, it
hashed the whole ref table, spilling to disk, instead of probing its index once per
deleted row. The function now runs with hash and merge joins off, so the one join it
makes is a nested loop through the index whatever the delete's size
(events_app.partitions.ddl.REF_REMOVE_FUNCTION, which new tables get). SQLite has no
such trigger.
"""

from django.db import migrations

REFS_REMOVE = """
CREATE OR REPLACE FUNCTION events_app_event_refs_remove() RETURNS trigger
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    DELETE FROM events_app_eventref r USING old_rows o
    WHERE r.event_type_id = o.event_type_id AND r.ref = o.external_id AND r.event_id = o.id;
    RETURN NULL;
END $$;
"""

REFS_REMOVE_BEFORE = """
CREATE OR REPLACE FUNCTION events_app_event_refs_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events_app_eventref r USING old_rows o
    WHERE r.event_type_id = o.event_type_id AND r.ref = o.external_id AND r.event_id = o.id;
    RETURN NULL;
END $$;
"""


def probe_by_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFS_REMOVE)


def planner_choice(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REFS_REMOVE_BEFORE)


class Migration(migrations.Migration):
    dependencies = [
        ("events_app", "0019_event_refs_add_probes_by_index"),
    ]

    operations = [migrations.RunPython(probe_by_index, planner_choice)]
