"""The DDL of the event partitions (PostgreSQL): creating a month's partitions, and
rebuilding the events and property-record tables partitioned or not (the migration).

Every function runs on a cursor in the caller's transaction. Table names come from
events_app.partitions.months, never from input; bounds are parameters or literals
formatted from datetimes.
"""

from __future__ import annotations

from typing import Any

from events_app.partitions.months import (
    EVENT_TABLE,
    PARTITIONED_TABLES,
    RECORD_TABLE,
    Month,
    default_partition,
)

# The refs of events live in events_app_eventref (a partitioned table cannot hold a
# unique index without the partition key). The ingest statement claims a ref itself
# before inserting its event; these triggers register the refs of every other writer
# (ORM saves, COPY, raw SQL) -- a taken ref fails as a duplicate key -- and release a
# ref when its event is deleted or changes ref. Statement-level with transition
# tables where possible: one set-based statement per write, not one per row.
#
# The add trigger looks each new ref up by its unique index with a subquery per row
# rather than NOT EXISTS: PL/pgSQL keeps the plan it made at a connection's first
# insert, and NOT EXISTS becomes an anti join that, planned for a 1000-event batch,
# hashes the whole ref table -- then again for every single event that connection
# inserts afterwards. (type, ref) is unique, so the subquery finds at most one row.
REF_ADD_FUNCTION = """
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

#
# The remove trigger joins the deleted events to the refs by that index too, a probe per
# deleted row: with hash joins allowed PostgreSQL hashes the whole ref table for a large
# delete (it cannot see how many rows a transition table holds relative to its width),
# spilling to disk -- three times the probes' time for a customer's million events.
REF_REMOVE_FUNCTION = """
CREATE OR REPLACE FUNCTION events_app_event_refs_remove() RETURNS trigger
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    DELETE FROM events_app_eventref r USING old_rows o
    WHERE r.event_type_id = o.event_type_id AND r.ref = o.external_id AND r.event_id = o.id;
    RETURN NULL;
END $$;
"""

REF_TRIGGERS = f"""
{REF_ADD_FUNCTION}

{REF_REMOVE_FUNCTION}

CREATE OR REPLACE FUNCTION events_app_event_refs_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events_app_eventref
    WHERE event_type_id = OLD.event_type_id AND ref = OLD.external_id AND event_id = OLD.id;
    IF NEW.external_id IS NOT NULL THEN
        INSERT INTO events_app_eventref (event_type_id, ref, event_id)
        VALUES (NEW.event_type_id, NEW.external_id, NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION events_app_event_refs_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events_app_eventref;
    RETURN NULL;
END $$;

CREATE TRIGGER events_app_event_refs_insert
    AFTER INSERT ON {EVENT_TABLE}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_refs_add();

CREATE TRIGGER events_app_event_refs_delete
    AFTER DELETE ON {EVENT_TABLE}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_refs_remove();

CREATE TRIGGER events_app_event_refs_update
    AFTER UPDATE OF event_type_id, external_id ON {EVENT_TABLE}
    FOR EACH ROW WHEN (
        OLD.event_type_id IS DISTINCT FROM NEW.event_type_id
        OR OLD.external_id IS DISTINCT FROM NEW.external_id)
    EXECUTE FUNCTION events_app_event_refs_change();

CREATE TRIGGER events_app_event_refs_truncate
    AFTER TRUNCATE ON {EVENT_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_refs_reset();
"""  # noqa: S608 (constants only)

REF_TRIGGERS_DROP = f"""
DROP TRIGGER IF EXISTS events_app_event_refs_truncate ON {EVENT_TABLE};
DROP TRIGGER IF EXISTS events_app_event_refs_update ON {EVENT_TABLE};
DROP TRIGGER IF EXISTS events_app_event_refs_delete ON {EVENT_TABLE};
DROP TRIGGER IF EXISTS events_app_event_refs_insert ON {EVENT_TABLE};
DROP FUNCTION IF EXISTS events_app_event_refs_reset();
DROP FUNCTION IF EXISTS events_app_event_refs_change();
DROP FUNCTION IF EXISTS events_app_event_refs_remove();
DROP FUNCTION IF EXISTS events_app_event_refs_add();
"""

# The exact per-type counters (events_app migration 0003): their functions stay, the
# triggers are created again on the rebuilt table.
COUNT_TRIGGERS = f"""
CREATE TRIGGER events_app_event_count_insert
    AFTER INSERT ON {EVENT_TABLE}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_add();

CREATE TRIGGER events_app_event_count_delete
    AFTER DELETE ON {EVENT_TABLE}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_remove();

CREATE TRIGGER events_app_event_count_update
    AFTER UPDATE OF event_type_id ON {EVENT_TABLE}
    FOR EACH ROW WHEN (OLD.event_type_id IS DISTINCT FROM NEW.event_type_id)
    EXECUTE FUNCTION events_app_event_count_retype();

CREATE TRIGGER events_app_event_count_truncate
    AFTER TRUNCATE ON {EVENT_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION events_app_event_count_reset();
"""

# The ref's unique index of the unpartitioned table (Event.Meta), restored when the
# partitioning is taken back.
REF_UNIQUE_INDEX = (
    f'CREATE UNIQUE INDEX "event_ref_unique_per_type" ON {EVENT_TABLE} '
    '("event_type_id", "external_id") WHERE "external_id" IS NOT NULL'
)
# Unique constraints that gain the partition key on the partitioned table.
RECORD_UNIQUE = "propertyrecord_unique_per_event"


def _quote(moment: Any) -> str:
    return f"'{moment.isoformat()}'"


def partition_exists(cursor: Any, name: str) -> bool:
    # pg_class read with the statement's snapshot, not to_regclass: its cached lookup
    # may still miss a table another session created while this one waited for the lock.
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = %s "
        "AND relnamespace = current_schema()::regnamespace)",
        [name],
    )
    return bool(cursor.fetchone()[0])


def is_partitioned(cursor: Any) -> bool:
    """Whether the events table is partitioned (PostgreSQL, after the migration)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass)",
        [EVENT_TABLE],
    )
    return bool(cursor.fetchone()[0])


def month_partition_create(cursor: Any, month: Month) -> bool:
    """Create `month`'s partition of each partitioned table; False if they exist.

    Created as a table of the parent's shape, then attached: ATTACH PARTITION takes a
    SHARE UPDATE EXCLUSIVE lock of the parent, which reads and inserts do not wait
    for (CREATE TABLE … PARTITION OF would take an ACCESS EXCLUSIVE one). The
    attaching creates the parent's indexes and constraints on the new table.

    A database converted before the default partition was dropped may still have one
    (until migration events_app 0016): its rows of that month move into the new
    partition in the same transaction, as PostgreSQL refuses to attach a range the
    default partition holds rows of. Moved within the table, they keep their counts
    and refs (the triggers of the parent table do not fire).
    """
    if partition_exists(cursor, month.partition(EVENT_TABLE)):
        return False
    bounds = f"FROM ({_quote(month.start)}) TO ({_quote(month.end)})"
    for table in PARTITIONED_TABLES:
        name = month.partition(table)
        default = default_partition(table)
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        if partition_exists(cursor, default):
            cursor.execute(f"LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(
                f"""WITH moved AS (
                    DELETE FROM {default} WHERE created_at >= %s AND created_at < %s RETURNING *
                ) INSERT INTO {name} SELECT * FROM moved""",  # noqa: S608
                [month.start, month.end],
            )
        cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}")
    return True


def default_partition_drop(cursor: Any) -> None:
    """Detach and drop the default partitions (migration events_app 0016), after
    creating the months of the rows they hold (which moves those rows)."""
    if not partition_exists(cursor, default_partition(EVENT_TABLE)):
        return
    for table in PARTITIONED_TABLES:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM "  # noqa: S608
            f"{default_partition(table)}"
        )
        for (start,) in cursor.fetchall():
            month_partition_create(cursor, Month.of(start))
    for table in PARTITIONED_TABLES:
        cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {default_partition(table)}")
        cursor.execute(f"DROP TABLE {default_partition(table)}")


def default_partition_restore(cursor: Any) -> None:
    """The reverse of `default_partition_drop`: empty default partitions again."""
    for table in PARTITIONED_TABLES:
        if not partition_exists(cursor, default_partition(table)):
            cursor.execute(f"CREATE TABLE {default_partition(table)} PARTITION OF {table} DEFAULT")


def _definitions(cursor: Any, table: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The table's constraints (name, type, definition) but its primary key, and the
    CREATE INDEX statements of its indexes that no constraint owns."""
    cursor.execute(
        """SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY conname""",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
        WHERE i.indrelid = %s::regclass AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY i.indexrelid::regclass::text""",
        [table],
    )
    return constraints, [row[0] for row in cursor.fetchall()]


def table_rebuild(cursor: Any, table: str, *, months: list[Month] | None, rows: str) -> None:
    """Rebuild `table` from `rows` (an INSERT's column list and query), partitioned
    by month of created_at with `months`' partitions (which must cover every row: there
    is no default partition), or unpartitioned when `months` is None; with the same
    column defaults, constraints and indexes.

    On a partitioned table the primary key and unique constraints gain created_at; the
    unique ref index goes (EventRef replaces it) and comes back when unpartitioning.
    """
    constraints, indexes = _definitions(cursor, table)
    new = f"{table}__rebuilt"
    partitioning = " PARTITION BY RANGE (created_at)" if months is not None else ""
    cursor.execute(
        f"CREATE TABLE {new} (LIKE {table} INCLUDING DEFAULTS INCLUDING IDENTITY){partitioning}"
    )
    if months is not None:
        for month in months:
            cursor.execute(
                f"CREATE TABLE {month.partition(table)} PARTITION OF {new} "
                f"FOR VALUES FROM ({_quote(month.start)}) TO ({_quote(month.end)})"
            )
    cursor.execute(f"INSERT INTO {new} {rows}")
    cursor.execute(f"DROP TABLE {table}")
    cursor.execute(f"ALTER TABLE {new} RENAME TO {table}")
    if table == RECORD_TABLE:
        # The rebuilt identity continues where the old one stopped.
        cursor.execute(f"ALTER SEQUENCE {new}_id_seq RENAME TO {table}_id_seq")
        cursor.execute(
            f"""SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"""  # noqa: S608
        )
    key = "id, created_at" if months is not None else "id"
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
    for name, kind, definition in constraints:
        if kind == "u" and name == RECORD_UNIQUE:
            columns = (
                "event_id, property_id, created_at"
                if months is not None
                else ("event_id, property_id")
            )
            definition = f"UNIQUE ({columns})"
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for statement in indexes:
        if months is not None and "event_ref_unique_per_type" in statement:
            continue
        # A partitioned table's own index is defined "ON ONLY" it.
        cursor.execute(statement.replace(" ON ONLY ", " ON ", 1))
    if table == EVENT_TABLE and months is None:
        cursor.execute(REF_UNIQUE_INDEX)
    if table == EVENT_TABLE:
        cursor.execute(COUNT_TRIGGERS)
        if months is not None:
            cursor.execute(REF_TRIGGERS)
