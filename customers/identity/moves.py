"""Moving the rows that name a customer to another one, set-based, and back.

Every table with a foreign key into Customer is found from the models' metadata (as
project.cascade finds what a delete reaches), so a table added later follows merges
without touching this code. Per table, a merge runs a fixed number of statements
whatever the number of rows:

1. rows of the secondary whose twin on the primary a unique constraint forbids (a
   current stay in the same segment, a segment check) are serialized into the record
   and deleted: the primary's own row stands for both;
2. the keys of the secondary's other rows are recorded (INSERT … SELECT into MergedRow,
   up to MERGED_KEYS_PER_ROW keys per row, aggregated into a JSON array);
3. one UPDATE … SET customer_id = primary WHERE customer_id = secondary.

On PostgreSQL steps 2 and 3 are one statement: the UPDATE's RETURNING feeds the INSERT.

An undo runs the reverse: one UPDATE of the recorded keys back to the secondary per
table, then the superseded rows re-inserted as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models import Exists, Model, OuterRef, Q, QuerySet

from customers.identity.models import MERGED_KEYS_PER_ROW, CustomerMerge, MergedRow
from customers.models import Customer


@dataclass(frozen=True)
class CustomerTable:
    """A model with a foreign key into Customer: what a merge moves."""

    model: type[Model]
    field: models.ForeignKey[Any, Any]
    # Unique constraints that include the customer column: (the other fields, condition).
    uniques: tuple[tuple[tuple[str, ...], Q | None], ...]

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def kind(self) -> str:
        """The API's name for these rows: the relation's name on a customer ("events",
        "workflow_runs", "aliases", …), else the model's plural name."""
        name = self.field.remote_field.related_name
        if name and not name.endswith("+"):
            return name
        return str(self.model._meta.verbose_name_plural).replace(" ", "_")

    def rows(self, customer_id: str) -> QuerySet[Any]:
        return self.model._base_manager.filter(**{self.field.attname: customer_id})

    def superseded(self, *, primary_id: str, secondary_id: str) -> QuerySet[Any]:
        """The secondary's rows whose twin on the primary a unique constraint forbids."""
        blocked = Q()
        for others, condition in self.uniques:
            twins = self.rows(primary_id).filter(**{name: OuterRef(name) for name in others})
            if condition is not None:
                twins = twins.filter(condition)
            clash = Q(Exists(twins))
            blocked |= (clash & condition) if condition is not None else clash
        if not self.uniques:
            return self.model._base_manager.none()
        return self.rows(secondary_id).filter(blocked)

    def recorded(self, merge: CustomerMerge) -> Iterator[list[Any]]:
        """The keys the merge moved of this table, typed as the table's primary key, a
        MergedRow's worth at a time."""
        pk = self.model._meta.pk
        assert pk is not None
        text = isinstance(pk, models.CharField)
        rows = MergedRow.objects.filter(merge=merge, table=self.label).order_by("pk")
        for row_ids in rows.values_list("row_ids", flat=True).iterator(chunk_size=1):
            yield list(row_ids) if text else [int(key) for key in row_ids]

    def recorded_sql(self, merge: CustomerMerge) -> tuple[str, list[Any]]:
        """PostgreSQL: the keys the merge moved of this table as one column of rows,
        typed as the table's primary key (unnested from the MergedRows' arrays)."""
        pk = self.model._meta.pk
        assert pk is not None
        key = "key" if isinstance(pk, models.CharField) else "CAST(key AS bigint)"
        quote = connection.ops.quote_name
        return (
            f"SELECT {key} FROM {quote(MergedRow._meta.db_table)}, "  # noqa: S608
            f"jsonb_array_elements_text({quote('row_ids')}) AS keys(key) "
            f"WHERE {quote('merge_id')} = %s AND {quote('table')} = %s",
            [merge.pk, self.label],
        )


def _uniques(model: type[Model], field_name: str) -> tuple[tuple[tuple[str, ...], Q | None], ...]:
    found: list[tuple[tuple[str, ...], Q | None]] = []
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and field_name in constraint.fields:
            others = tuple(name for name in constraint.fields if name != field_name)
            found.append((others, cast("Q | None", constraint.condition)))
    for together in model._meta.unique_together:
        if field_name in together:
            found.append((tuple(name for name in together if name != field_name), None))
    return tuple(found)


@cache
def customer_tables() -> tuple[CustomerTable, ...]:
    """Every table with a foreign key into Customer, read from the models once."""
    tables = []
    # include_hidden: relations named "+" (no reverse accessor) are tables too.
    for relation in Customer._meta.get_fields(include_hidden=True):
        if not relation.auto_created or relation.concrete:
            continue
        field = getattr(relation, "field", None)
        if not isinstance(field, models.ForeignKey) or field.model._meta.proxy:
            continue
        model = cast("type[Model]", field.model._meta.concrete_model)
        tables.append(CustomerTable(model, field, _uniques(model, field.name)))
    return tuple(sorted(tables, key=lambda t: t.label))


class _ExactEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder, but datetimes keep their microseconds (it cuts them to
    milliseconds): a restored row must equal the row as it was."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


def _serialize(queryset: QuerySet[Any]) -> list[dict[str, Any]]:
    """Rows as django.core.serializers' data (model label, pk, fields), JSON-ready."""
    rows = serializers.serialize("python", queryset)
    loaded: list[dict[str, Any]] = json.loads(json.dumps(rows, cls=_ExactEncoder))
    return loaded


def customer_row_serialize(customer_id: str) -> dict[str, Any]:
    return _serialize(Customer.objects.filter(pk=customer_id))[0]


def rows_restore(rows: list[dict[str, Any]]) -> None:
    """Insert serialized rows back, with their keys and every field as it was."""
    for restored in serializers.deserialize("python", rows):
        restored.save()


def _record_keys(table: CustomerTable, merge: CustomerMerge, secondary_id: str) -> None:
    """Step 2 (SQLite): INSERT … SELECT the secondary's row keys into MergedRow, numbered
    and aggregated MERGED_KEYS_PER_ROW to a row (a JSON array of the keys as text)."""
    quote = connection.ops.quote_name
    pk = table.model._meta.pk
    assert pk is not None
    assert pk.column is not None
    select = table.rows(secondary_id).values_list(pk.attname)
    sql, params = select.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(MergedRow._meta.db_table)} "  # noqa: S608
            f"({quote('merge_id')}, {quote('table')}, {quote('row_ids')}) "
            f"SELECT %s, %s, json_group_array(numbered.k) FROM ("
            f"SELECT CAST(moved.{quote(pk.column)} AS varchar) AS k, "
            f"(row_number() OVER () - 1) / {int(MERGED_KEYS_PER_ROW)} AS part "
            f"FROM ({sql}) AS moved) AS numbered GROUP BY numbered.part",
            [merge.pk, table.label, *params],
        )


def _move_and_record_pg(
    table: CustomerTable, merge: CustomerMerge, primary_id: str, secondary_id: str
) -> int:
    """Steps 2 and 3 as one statement (PostgreSQL): the UPDATE returns the keys it moved
    and the INSERT aggregates them, so the secondary's rows are found once, not once to
    record and again to move. Returns the rows moved."""
    quote = connection.ops.quote_name
    pk = table.model._meta.pk
    assert pk is not None
    assert pk.column is not None
    column = quote(table.field.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH moved AS (UPDATE {quote(table.model._meta.db_table)} "  # noqa: S608
            f"SET {column} = %s WHERE {column} = %s RETURNING {quote(pk.column)} AS k), "
            f"recorded AS (INSERT INTO {quote(MergedRow._meta.db_table)} "
            f"({quote('merge_id')}, {quote('table')}, {quote('row_ids')}) "
            f"SELECT %s, %s, jsonb_agg(numbered.k) FROM ("
            f"SELECT CAST(moved.k AS varchar) AS k, "
            f"(row_number() OVER () - 1) / {int(MERGED_KEYS_PER_ROW)} AS part "
            f"FROM moved) AS numbered GROUP BY numbered.part) "
            f"SELECT count(*) FROM moved",
            [primary_id, secondary_id, merge.pk, table.label],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@dataclass
class Moved:
    counts: dict[str, int]
    superseded_counts: dict[str, int]
    superseded_rows: list[dict[str, Any]]


def rows_move(*, merge: CustomerMerge, primary_id: str, secondary_id: str) -> Moved:
    """Move every row naming the secondary to the primary (steps 1-3 per table)."""
    moved = Moved({}, {}, [])
    for table in customer_tables():
        superseded = table.superseded(primary_id=primary_id, secondary_id=secondary_id)
        rows = _serialize(superseded)
        if rows:
            moved.superseded_rows += rows
            moved.superseded_counts[table.kind] = len(rows)
            superseded._raw_delete(superseded.db)
        if connection.vendor == "postgresql":
            count = _move_and_record_pg(table, merge, primary_id, secondary_id)
        else:
            _record_keys(table, merge, secondary_id)
            count = table.rows(secondary_id).update(**{table.field.attname: primary_id})
        if count:
            moved.counts[table.kind] = count
    return moved


# The keys of one table's moved rows during an undo (PostgreSQL): a temporary table,
# analyzed, so the planner knows how many there are.
_UNDO_KEYS = "identity_undo_keys"


def _move_back_pg(table: CustomerTable, merge: CustomerMerge) -> int:
    """The UPDATE back, joined to the moved keys copied into an analyzed temporary table.

    Joined to MergedRow directly, the planner judges the keys by that table's statistics,
    which lag behind the rows a merge just wrote: it took a hundred thousand keys for a
    handful and nested a scan of them inside the scan of the primary's rows (minutes
    instead of a second). With the keys' real count it hashes them once.
    """
    quote = connection.ops.quote_name
    keys_sql, keys_params = table.recorded_sql(merge)
    pk = table.model._meta.pk
    assert pk is not None
    assert pk.column is not None
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_UNDO_KEYS}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_UNDO_KEYS} ON COMMIT DROP AS {keys_sql}", keys_params
        )
        cursor.execute(f"ANALYZE {_UNDO_KEYS}")
        cursor.execute(
            f"UPDATE {quote(table.model._meta.db_table)} SET {quote(table.field.column)} = %s "  # noqa: S608
            f"WHERE {quote(table.field.column)} = %s "
            f"AND {quote(pk.column)} IN (SELECT * FROM {_UNDO_KEYS})",
            [merge.secondary_id, merge.primary_id],
        )
        count: int = cursor.rowcount
        cursor.execute(f"DROP TABLE {_UNDO_KEYS}")
    return count


def rows_move_back(*, merge: CustomerMerge) -> Iterator[tuple[str, int]]:
    """Give the rows the merge moved back to the secondary (which must exist again), one
    UPDATE per table; then re-insert the rows it superseded. Yields (kind, count)."""
    for table in customer_tables():
        if connection.vendor == "postgresql":
            count = _move_back_pg(table, merge)
        else:
            count = sum(
                table.rows(merge.primary_id)
                .filter(pk__in=keys)
                .update(**{table.field.attname: merge.secondary_id})
                for keys in table.recorded(merge)
            )
        if count:
            yield table.kind, count
    rows_restore(merge.superseded_rows)
