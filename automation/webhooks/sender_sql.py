"""The sender's two statements per attempt, written out: the claim and the record.

They run once per attempt, and the ORM spent more CPU building them than PostgreSQL
spends running them, so they are raw SQL (the figures are in bench/README.md), built
once per process from the models and prepared on the connection (project.sql). The
protocol they serve (what a claim and a record mean) is in automation.webhooks.sender.
Portable: PostgreSQL, and SQLite 3.35+ with one more statement where PostgreSQL needs
none.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field, Model

from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from project.sql import fetch_one, insert_parts, model_columns, model_instance

# The claim. {target} picks the row: one id, or an endpoint's next due row nobody holds
# (with SKIP LOCKED where the database has it, so concurrent workers take different rows).
# NOT EXISTS (… OFFSET limit-1): the endpoint has fewer than `limit` attempts in flight
# (served by delivery_in_flight_idx).
_CLAIM_SQL = """
UPDATE {table}
SET attempt_count = attempt_count + 1, locked_until = %(lease)s, last_attempt_at = %(now)s,
    queued_until = NULL
WHERE {target} AND status = 'pending' AND next_attempt_at <= %(now)s
  AND (locked_until IS NULL OR locked_until < %(now)s)
  AND NOT EXISTS (
    SELECT 1 FROM {table} AS busy
    WHERE busy.endpoint_id = {table}.endpoint_id AND busy.status = 'pending'
      AND busy.locked_until >= %(now)s
    LIMIT 1 OFFSET %(offset)s
  )
RETURNING {columns}
"""
# PostgreSQL: the claimed row's endpoint comes back from the claim itself (a second
# SELECT per attempt cost a round trip and an ORM query). SQLite has no UPDATE in WITH.
_CLAIM_AND_LOAD_SQL = """
WITH claimed AS ({claim})
SELECT claimed.*, {endpoint_columns}
FROM claimed JOIN {endpoint_table} AS ep ON ep.id = claimed.endpoint_id
"""
_BY_ID = "id = %(id)s"
_NEXT_OF_ENDPOINT = """id = (
    SELECT nxt.id FROM {table} AS nxt
    WHERE nxt.endpoint_id = %(endpoint_id)s AND nxt.status = 'pending'
      AND nxt.next_attempt_at <= %(now)s
      AND (nxt.locked_until IS NULL OR nxt.locked_until < %(now)s)
    ORDER BY nxt.next_attempt_at LIMIT 1 {skip_locked}
  )"""


@functools.cache
def _claim_sql(alias: str, *, next_of_endpoint: bool) -> tuple[str, bool]:
    """The claim's text for this database, and whether it also returns the endpoint."""
    quote = connection.ops.quote_name
    table = quote(Delivery._meta.db_table)
    features = connection.features
    skip = "FOR UPDATE SKIP LOCKED" if features.has_select_for_update_skip_locked else ""
    target = _NEXT_OF_ENDPOINT.format(table=table, skip_locked=skip) if next_of_endpoint else _BY_ID
    claim = _CLAIM_SQL.format(table=table, target=target, columns=model_columns(Delivery, table))
    if connection.vendor != "postgresql":
        return claim, False
    joined = _CLAIM_AND_LOAD_SQL.format(
        claim=claim,
        endpoint_columns=model_columns(Endpoint, "ep"),
        endpoint_table=quote(Endpoint._meta.db_table),
    )
    return joined, True


def claim_update(now: datetime, *, delivery_id: str = "", endpoint_id: str = "") -> Delivery | None:
    """Run the claim for one delivery id or for an endpoint's next due delivery; return
    the delivery claimed (with its endpoint, read by the same statement), or None."""
    sql, joined = _claim_sql(connection.alias, next_of_endpoint=not delivery_id)
    # The outbound deadline plus a margin for the database work around the call: after
    # that the worker is presumed dead and another may make the attempt.
    lease = now + timedelta(
        seconds=settings.HERALD_OUTBOUND_TIMEOUT + settings.HERALD_DELIVERY_CLAIM_MARGIN
    )
    at = connection.ops.adapt_datetimefield_value
    params = {
        "lease": at(lease),
        "now": at(now),
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "offset": max(int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY), 1) - 1,
    }
    row = fetch_one(sql, params)
    if row is None:
        return None
    split = len(Delivery._meta.concrete_fields)
    delivery = model_instance(Delivery, row[:split])
    if joined:
        delivery.endpoint = model_instance(Endpoint, row[split:])
    else:
        delivery.endpoint = Endpoint.objects.get(pk=delivery.endpoint_id)
    return delivery


# The record: the delivery's next state if the row is still ours (same attempt count,
# still pending), and the attempt row, DISCARDED when it was not, and none at all when
# the delivery is gone (its endpoint was deleted while the attempt was in flight).
_RECORD_UPDATE_SQL = """
UPDATE {delivery_table} SET {assignments}
WHERE id = %(id)s AND status = 'pending' AND attempt_count = %(number)s
"""
_RECORD_INSERT_SQL = "INSERT INTO {attempt_table} ({columns}) SELECT {values} FROM {source}"
# PostgreSQL: both in one statement, atomic without a transaction (no BEGIN and COMMIT
# round trips, no ORM query building per attempt). `target` takes the key-share lock the
# attempt's foreign key needs before the INSERT does: a delete holding the delivery makes
# it wait, and once that delete commits the row is skipped, so nothing is inserted (the
# foreign key check itself would fail instead).
_RECORD_SQL = """
WITH ours AS ({update} RETURNING 1),
target AS (SELECT id FROM {delivery_table} WHERE id = %(id)s FOR KEY SHARE)
{insert} RETURNING outcome
"""
_OURS_OUTCOME = "CASE WHEN EXISTS (SELECT 1 FROM ours) THEN %(outcome)s ELSE %(discarded)s END"

ATTEMPT_COLUMNS = ("delivery_id", "number", "started_at", "duration_ms", "status_code", "error",
                   "response_excerpt")  # fmt: skip


@functools.cache
def _field(model: type[Model], attname: str) -> Field[Any, Any]:
    return next(f for f in model._meta.concrete_fields if f.attname == attname)


@functools.cache
def _record_sql(alias: str, assigned: tuple[str, ...]) -> tuple[str, str, str]:
    """For this database and these delivery fields: the one-statement form (PostgreSQL),
    and the UPDATE and INSERT texts for the other databases."""
    quote = connection.ops.quote_name
    delivery_table = quote(Delivery._meta.db_table)
    update = _RECORD_UPDATE_SQL.format(
        delivery_table=delivery_table,
        assignments=", ".join(
            f"{quote(str(_field(Delivery, name).column))} = %(d_{name})s" for name in assigned
        ),
    )

    def insert(outcome: str, source: str) -> str:
        given = {name: f"%(a_{name})s" for name in ATTEMPT_COLUMNS}
        parts = insert_parts(DeliveryAttempt, given={**given, "outcome": outcome})
        assert not parts.defaulted, "every attempt column is given"
        return _RECORD_INSERT_SQL.format(
            attempt_table=quote(DeliveryAttempt._meta.db_table),
            columns=parts.columns,
            values=parts.values,
            source=source,
        )

    single = _RECORD_SQL.format(
        delivery_table=delivery_table, update=update, insert=insert(_OURS_OUTCOME, "target")
    )
    # SQLite: one writer at a time, so no lock; the row just has to exist.
    return single, update, insert("%(outcome)s", f"{delivery_table} WHERE id = %(id)s")


def record_statement(
    delivery: Delivery, fields: dict[str, Any], attempt: dict[str, Any], outcome: str
) -> bool:
    """Write the delivery's next state (`fields`) and the attempt row (ATTEMPT_COLUMNS)
    with `outcome`; return whether the row was still ours (else the attempt is
    recorded DISCARDED and the delivery is left alone)."""
    single, update, insert = _record_sql(connection.alias, tuple(fields))
    params: dict[str, Any] = {"id": delivery.pk, "number": delivery.attempt_count}
    for name, value in fields.items():
        params[f"d_{name}"] = _field(Delivery, name).get_db_prep_save(value, connection)
    for name in ATTEMPT_COLUMNS:
        field = _field(DeliveryAttempt, name)
        params[f"a_{name}"] = field.get_db_prep_save(attempt[name], connection)
    discarded = DeliveryAttempt.Outcome.DISCARDED.value
    if connection.vendor == "postgresql":
        params.update(outcome=outcome, discarded=discarded)
        row = fetch_one(single, params)
        return row is not None and row[0] != discarded
    with connection.cursor() as cursor, transaction.atomic():
        cursor.execute(update, params)
        ours = cursor.rowcount == 1
        params["outcome"] = outcome if ours else discarded
        cursor.execute(insert, params)
    return ours
