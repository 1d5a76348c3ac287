"""The few raw-SQL helpers, with their SQLite fallback beside them.

Raw SQL is kept to the hot paths (ingestion, the runner's runs, the sender's claim and
record, the scheduler's tick) where the ORM spent more CPU building a statement than
PostgreSQL spends running it. They share two things, said once here:

* `fetch_all` / `fetch_one`: run a statement on Django's connection (same session and
  transaction) through a server-binding psycopg cursor on PostgreSQL, so psycopg
  prepares it after `prepare_threshold` uses on a connection (project/settings.py) and
  PostgreSQL stops planning it at every call. Django's own cursors bind on the client,
  which rules prepared statements out. Elsewhere (SQLite) Django's cursor runs it.
* `insert_parts`: the column list, value list and record-set definition of an
  `INSERT … SELECT` (or `VALUES`) built from a model, so a column added to the model
  later is filled with its field default without touching the statement.
* `model_columns` / `model_instance`: read a model's row from a raw statement's result,
  with the ORM's converters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg
from django.db import connection
from django.db.models import AutoField, Field, Model
from django.db.models.expressions import Col

Params = Sequence[Any] | Mapping[str, Any]
M = TypeVar("M", bound=Model)


# ---------------------------------------------------------------- running statements


_PLACEHOLDER = re.compile(r"%(.)", re.DOTALL)


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str | None:
    """`sql` with its `%s` placeholders as PostgreSQL's `$1, $2, …` (and `%%` as `%`), or
    None if it has placeholders of another kind.

    psycopg makes this conversion on every execution, and caches it only for statements
    under 4096 characters: the ingest statements are longer, and re-parsing them was a
    visible part of a single POST. Converted once here, they run on a RawCursor.
    """
    count = 0
    other = False

    def number(match: re.Match[str]) -> str:
        nonlocal count, other
        if match.group(1) == "s":
            count += 1
            return f"${count}"
        if match.group(1) != "%":
            other = True
        return "%"

    numbered = _PLACEHOLDER.sub(number, sql)
    return None if other else numbered


def _execute(sql: str, params: Params, fetch: Callable[[Any], Any]) -> Any:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)
    connection.ensure_connection()
    numbered = _numbered(sql) if isinstance(params, list | tuple) else None
    if numbered is None:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return fetch(cursor)
    with connection.wrap_database_errors, psycopg.RawCursor(connection.connection) as raw:
        raw.execute(numbered, params)
        return fetch(raw)


def fetch_all(sql: str, params: Params) -> list[tuple[Any, ...]]:
    """Run `sql` on Django's connection (prepared on PostgreSQL) and return its rows.

    Keep the text of a statement the same from call to call (values as parameters),
    so the prepared statement is reused.
    """
    rows: list[tuple[Any, ...]] = _execute(sql, params, lambda cursor: cursor.fetchall())
    return rows


def fetch_one(sql: str, params: Params) -> tuple[Any, ...] | None:
    """As fetch_all, for a statement that returns at most one row (None: no row)."""
    row: tuple[Any, ...] | None = _execute(sql, params, lambda cursor: cursor.fetchone())
    return row


# ---------------------------------------------------------------- building INSERTs


class InsertParts(NamedTuple):
    """The pieces of `INSERT INTO table (columns) SELECT values FROM … alias(recordset)`."""

    columns: str  # every column written, quoted, comma-separated
    values: str  # one expression per column, same order
    recordset: str  # "name type, …" of the per-row columns (json_to_recordset's AS list)
    defaulted: list[Field[Any, Any]]  # the fields whose value is a parameter, in order


def insert_parts(
    model: type[Model],
    *,
    per_row: Sequence[str] = (),
    alias: str = "",
    given: Mapping[str, str] | None = None,
    param: str = "%s",
) -> InsertParts:
    """Build the parts of an INSERT of `model` from its concrete fields (by attname).

    `per_row` columns come from the record set `alias` (same names), `given` ones are
    SQL expressions, every other column is a parameter cast to its type (`param`, a
    format string that may name the field as `{attname}`, e.g. "%(c_{attname})s"): the
    caller passes its field default, or any constant. An auto-incremented primary key
    nobody names is left to the database. Only identifiers from the model's metadata
    are formatted in; values are parameters.
    """
    given = given or {}
    quote = connection.ops.quote_name
    fields = [
        f
        for f in model._meta.concrete_fields
        if not (isinstance(f, AutoField) and f.attname not in per_row and f.attname not in given)
    ]
    by_attname = {f.attname: f for f in fields}
    missing = (set(per_row) | given.keys()) - by_attname.keys()
    assert not missing, f"{model.__name__} has no column(s) {missing}"
    values: list[str] = []
    defaulted: list[Field[Any, Any]] = []
    for f in fields:
        if f.attname in per_row:
            values.append(f"{alias}.{quote(f.attname)}")
        elif f.attname in given:
            values.append(given[f.attname])
        else:
            values.append(f"{param.format(attname=f.attname)}::{f.db_type(connection)}")
            defaulted.append(f)
    columns = ", ".join(quote(str(f.column)) for f in fields)
    recordset = ", ".join(
        f"{quote(name)} {by_attname[name].db_type(connection)}" for name in per_row
    )
    return InsertParts(columns, ", ".join(values), recordset, defaulted)


# ---------------------------------------------------------------- reading rows


def table_stamp_parts(model: type[Model]) -> tuple[str, str]:
    """A small table's stamp, (number of rows, latest updated_at) as text: (select list
    of its 2 columns, the rest of the statement). Any create, update or delete changes
    it, so a process compares it with the one its cached copy was read at."""
    return (
        "CAST(count(*) AS TEXT), CAST(max(updated_at) AS TEXT)",
        f"FROM {model._meta.db_table}",
    )


def model_columns(model: type[Model], alias: str) -> str:
    """`alias."column", …` of every concrete column of `model`, in field order (the
    order model_instance reads them in)."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(str(f.column))}" for f in model._meta.concrete_fields)


_Conversion = tuple[int, Col, list[Callable[[Any, Any, Any], Any]]]


@functools.cache
def _row_reader(alias: str, model: type[Model]) -> tuple[list[str], list[_Conversion]]:
    """The attnames of `model`'s concrete columns and, for those that need one, the
    ORM's converters (e.g. JSON text -> Python; SQLite's text -> datetime). Built once
    per database alias: building them per row cost more CPU than the query."""
    conversions: list[_Conversion] = []
    fields = model._meta.concrete_fields
    for i, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if converters:
            conversions.append((i, col, converters))
    return [f.attname for f in fields], conversions


def model_instance(model: type[M], values: Sequence[Any]) -> M:
    """A model instance from its concrete columns (model_columns) as the database
    returned them."""
    attnames, conversions = _row_reader(connection.alias, model)
    row = list(values)
    for i, col, converters in conversions:
        for convert in converters:
            row[i] = convert(row[i], col, connection)
    return model.from_db(connection.alias, attnames, row)
