"""Drop the `LIKE` index Django made beside the events' primary key (PostgreSQL).

Django gives every indexed text column on PostgreSQL a second, `varchar_pattern_ops`
index for `LIKE 'prefix%'` lookups, the primary key included. Nothing looks events up
by a prefix of their id: the API, the admin's search and every join match it exactly,
through the primary key. Yet every stored event wrote an entry in it, and so did every
event a merge moved (a new customer id is not a HOT update: each of the table's indexes
gets a new entry): one index in fourteen, for no reader. Found by its operator class,
not its name (Django derives the name from a hash). Dropped from the partitioned table,
which drops it from every month; months created later follow the parent's indexes.

Django makes it again only if the id field is altered; a migration that does must drop
it again.
"""

from django.db import migrations

TABLE = "events_app_event"

FIND = """
SELECT index_class.relname
FROM pg_index i
JOIN pg_class index_class ON index_class.oid = i.indexrelid
JOIN pg_class table_class ON table_class.oid = i.indrelid
JOIN pg_opclass operator_class ON operator_class.oid = i.indclass[0]
JOIN pg_attribute a ON a.attrelid = table_class.oid AND a.attnum = i.indkey[0]
WHERE table_class.relname = %s AND i.indnatts = 1 AND a.attname = 'id'
    AND operator_class.opcname = 'varchar_pattern_ops'
"""


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FIND, [TABLE])
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS events_app_event_id_like ON {TABLE} (id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("events_app", "0020_event_refs_remove_probes_by_index")]

    operations = [migrations.RunPython(drop, restore, elidable=False)]
