"""The set-based INSERT of a batch of events on PostgreSQL (the ingestion hot path).

One statement stores a whole batch: the events come in as one JSON document,
each ref is claimed first in EventRef (the refs of the partitioned events table,
unique per type forever) with `ON CONFLICT … DO NOTHING`, and only the events
without a ref or whose ref was claimed are inserted (so a concurrent writer of the
same ref never causes an IntegrityError or a half-written batch: the loser waits
for the winner's commit and then skips the row), and data-modifying CTEs insert the
property records of exactly the events that were stored, and the customers that
stored events name by a new external id or a new anonymous id. A single statement is
atomic on its own, so events, records and customers commit together without a
transaction around them. It is much faster than `bulk_create`, which sends one
parameter per cell and builds model instances (bench/README.md).

A variant for one event (`pg_insert_single`, events_app.ingest_single) also checks the
references the event was judged by and resolves its customer inside the statement, so a
single POST is one round trip.

The statement is built from the models, so a column added to Event later is filled
with its field default unless it is listed in PER_EVENT_COLUMNS (then PreparedEvent
must carry it).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import msgspec
from django.db import connection
from django.db.models import Field

from customers.models import Customer, CustomerAlias
from customers.privacy.models import SuppressedIdentifier
from events_app.ingest_hooks import PREPARED_COLUMNS, PreparedEvent
from events_app.models import Event, EventRef, PropertyRecord
from project.sql import fetch_all, insert_parts

# Columns whose value differs per event; every other column gets its field default.
PER_EVENT_COLUMNS = PREPARED_COLUMNS
# One JSON document carries the whole batch: msgspec encodes the PreparedEvent
# dataclasses in C and PostgreSQL's json_to_recordset parses them in C, where
# binding one array per column made psycopg quote every value in Python (a large part
# of a batch's time).
_encode = msgspec.json.Encoder().encode


def _customers_cte() -> tuple[str, list[Field[Any, Any]]]:
    """The CTE creating the customers the stored events name by a new external id or
    a new anonymous id (an anonymous customer: no external id), and the customer
    fields that take their default.

    Only for events actually stored: a duplicate ref (even one a concurrent writer
    committed first) creates no customer. Events of one new identifier share the
    customer id ingestion allotted, so `DISTINCT ON` that id writes it once. A
    concurrent request that created the same external or anonymous id first wins
    (`ON CONFLICT DO NOTHING` without a target: either unique index may be the one
    that conflicts); the events that named the allotted id then point at no customer,
    which the statement reports (see `_statement`) and the caller retries with the
    winner's id.
    """
    quote = connection.ops.quote_name
    columns, values, _, defaulted = insert_parts(
        Customer,
        given={
            "id": 'input."customer_id"',
            "external_id": (
                'CASE WHEN input."new_customer_anonymous" THEN NULL ELSE input."new_customer" END'
            ),
            "anonymous_id": (
                'CASE WHEN input."new_customer_anonymous" THEN input."new_customer" END'
            ),
            "created_at": 'input."created_at"',
            "updated_at": 'input."created_at"',
        },
    )
    # Only identifiers from the model's metadata are formatted in; values are parameters.
    cte = f"""stored_customers AS (
    INSERT INTO {quote(Customer._meta.db_table)} ({columns})
    SELECT DISTINCT ON (input."customer_id") {values}
    FROM input JOIN stored ON stored."id" = input."id"
    WHERE input."new_customer" IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING "id"
)"""  # noqa: S608
    return cte, defaulted


# The events whose new customer's identifier is on the suppression list, as this
# statement's snapshot sees it (customers.privacy.locks: ingest takes the identifier's
# lock in a statement before this one, so a suppression committed before is seen).
# The identifiers to check come as a second JSON parameter with their digests (the
# keyed hash is computed in Python, with the server's secret).
_SUPPRESSED_INPUT = """raw AS (
    SELECT u.*, u.records AS property_records
    FROM json_to_recordset(%s::json)
        AS u({recordset}, "records" json, "new_customer" text,
            "new_customer_anonymous" boolean)
), suppressed_now AS (
    SELECT n."new_customer", n."anonymous"
    FROM json_to_recordset(%s::json)
        AS n("new_customer" text, "anonymous" boolean, "kind" text, "digest" text)
    WHERE EXISTS (
        SELECT 1 FROM {suppressed} s WHERE s."kind" = n."kind" AND s."digest" = n."digest"
    )
), input AS (
    SELECT raw.* FROM raw
    WHERE NOT EXISTS (
        SELECT 1 FROM suppressed_now s
        WHERE s."new_customer" = raw."new_customer"
            AND s."anonymous" = raw."new_customer_anonymous"
    )
)"""


# The single-event variant's input (events_app.ingest_single): the event is inserted
# only if the references its caller judged it by -- its type with the definitions and
# the ingest hook's facts, as `references` reads them -- are still those the caller read
# (their rows as text, compared whole, in this statement's snapshot), and its customer,
# named by id, external id or anonymous id (own identifier first, then an alias), exists:
# then `customer_id` is that customer's. Otherwise nothing is inserted and the event
# comes back as refused, for the caller to take the general path. Each lookup is a
# scalar subquery (an index probe), for the reason given at the ingest statement's end.
_SINGLE_INPUT = """current AS (
    SELECT (SELECT string_agg(r::text, '|' ORDER BY r::text) FROM ({references}) r)
        IS NOT DISTINCT FROM %s::text AS ok
), raw AS (
    SELECT u.*, u.records AS property_records
    FROM json_to_recordset(%s::json)
        AS u({recordset}, "records" json, "new_customer" text,
            "new_customer_anonymous" boolean)
), named AS (
    SELECT %s::text AS by, %s::text AS value
), resolved AS MATERIALIZED (
    SELECT raw.*, CASE named.by
        WHEN 'id' THEN (SELECT c."id" FROM {customers} c WHERE c."id" = named.value)
        WHEN 'external' THEN COALESCE(
            (SELECT c."id" FROM {customers} c WHERE c."external_id" = named.value),
            (SELECT a."customer_id" FROM {aliases} a
                WHERE a."kind" = 'external' AND a."value" = named.value))
        WHEN 'anonymous' THEN COALESCE(
            (SELECT c."id" FROM {customers} c WHERE c."anonymous_id" = named.value),
            (SELECT a."customer_id" FROM {aliases} a
                WHERE a."kind" = 'anonymous' AND a."value" = named.value))
    END AS "resolved_customer_id"
    FROM raw, named WHERE (SELECT ok FROM current)
), input AS (
    SELECT {columns}, property_records, "new_customer", "new_customer_anonymous"
    FROM resolved WHERE "resolved_customer_id" IS NOT NULL
)"""


def _single_input(references: str, recordset: str) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(
        '"resolved_customer_id" AS "customer_id"' if c == "customer_id" else quote(c)
        for c in PER_EVENT_COLUMNS
    )
    # Only identifiers from the models' metadata and the caller's SQL text (built from
    # constants, its values parameters) are formatted in.
    return _SINGLE_INPUT.format(
        references=references,
        recordset=recordset,
        customers=quote(Customer._meta.db_table),
        aliases=quote(CustomerAlias._meta.db_table),
        columns=columns,
    )


@functools.cache
def _statement(
    check_suppressed: bool = False, references: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL text and the fields that take their default (filled per call).

    `check_suppressed`: the variant for batches creating customers, which leaves out
    the events whose new identifier is suppressed and reports them (known customers
    take the plain variant: they pay nothing for it). `references`: the single-event
    variant that checks the references and resolves the customer itself
    (`pg_insert_single`)."""
    quote = connection.ops.quote_name
    # The recordset's columns are PreparedEvent's attribute names.
    event_columns, event_values, event_recordset, event_defaulted = insert_parts(
        Event, per_row=PER_EVENT_COLUMNS, alias="u"
    )
    customers_cte, customer_defaulted = _customers_cte()
    defaulted = [*event_defaulted, *customer_defaulted]
    # The customers an insert creates and those a concurrent request took first: the
    # single-event variant creates none (its customer exists), so it leaves both out.
    customers_cte = f""",
{customers_cte}"""
    taken = f"""
UNION ALL
-- The allotted customers that stored events point at and that exist nowhere: a
-- concurrent request created the same external or anonymous id first. (This snapshot
-- sees neither that customer nor those of stored_customers, hence both tests.) The row
-- is the allotted id, NULL, the identifier.
SELECT DISTINCT input."customer_id", NULL::boolean, input."new_customer"
FROM input JOIN stored ON stored."id" = input."id"
WHERE input."new_customer" IS NOT NULL
    AND input."customer_id" NOT IN (SELECT "id" FROM stored_customers)
    -- A subquery per row for the same reason (NOT EXISTS would become an anti join).
    AND (
        SELECT c."id" FROM {quote(Customer._meta.db_table)} c WHERE c."id" = input."customer_id"
    ) IS NULL"""  # noqa: S608
    if references is not None:
        customers_cte, taken, defaulted = "", "", list(event_defaulted)
    records = PropertyRecord._meta
    refs = EventRef._meta
    # Only identifiers from the model's metadata are formatted in; values are parameters.
    input_cte = f"""input AS (
    SELECT u.*, u.records AS property_records
    FROM json_to_recordset(%s::json)
        AS u({event_recordset}, "records" json, "new_customer" text,
            "new_customer_anonymous" boolean)
)"""  # noqa: S608
    refused = ""
    if references is not None:
        input_cte = _single_input(references, event_recordset)
    if check_suppressed or references is not None:
        if check_suppressed:
            input_cte = _SUPPRESSED_INPUT.format(
                recordset=event_recordset,
                suppressed=quote(SuppressedIdentifier._meta.db_table),
            )
        # Single-event variant: 'stale' when the references changed.
        why = (
            "NULL"
            if references is None
            else "(SELECT CASE WHEN ok THEN NULL ELSE 'stale' END FROM current)"
        )
        refused = f"""
UNION ALL
-- The events left out because their new identifier is suppressed (or, single-event
-- variant, not inserted by it): the event id, NULL, NULL (a taken customer's row always
-- names its identifier).
SELECT raw."id", NULL::boolean, {why} FROM raw WHERE raw."id" NOT IN (SELECT "id" FROM input)"""  # noqa: S608
    sql = f"""
WITH {input_cte}, claimed AS (
    INSERT INTO {quote(refs.db_table)} ("event_type_id", "ref", "event_id")
    SELECT input."event_type_id", input."external_id", input."id"
    FROM input WHERE input."external_id" IS NOT NULL
    ON CONFLICT ("event_type_id", "ref") DO NOTHING
    RETURNING "event_id"
), stored AS (
    INSERT INTO {quote(Event._meta.db_table)} ({event_columns})
    SELECT {event_values}
    FROM input u
    WHERE u."external_id" IS NULL OR u."id" IN (SELECT "event_id" FROM claimed)
    RETURNING "id", "customer_id"
), stored_records AS (
    INSERT INTO {quote(records.db_table)}
        ("event_id", "property_id", "property_value", "created_at")
    SELECT stored."id", r.pair ->> 0, r.pair ->> 1, input."created_at"
    FROM input JOIN stored ON stored."id" = input."id"
    CROSS JOIN LATERAL json_array_elements(input.property_records) AS r(pair)
){customers_cte}
SELECT "id", true, "customer_id" FROM stored
UNION ALL
-- The events not stored, with the id of the event holding their ref. That event is
-- NULL here when a concurrent transaction committed it after this statement began
-- (its snapshot cannot see it; ON CONFLICT waited for it): the caller looks it up.
-- The holder is a subquery per row, not a join: the statement is prepared, and a
-- join's generic plan made while the refs looked few hashes the whole ref table on
-- every execution; this probes the unique index, and only for rows not stored.
SELECT input."id", false, (
    SELECT existing."event_id" FROM {quote(refs.db_table)} existing
    WHERE existing."event_type_id" = input."event_type_id"
        AND existing."ref" = input."external_id"
)
FROM input
WHERE input."id" NOT IN (SELECT "id" FROM stored){taken}{refused}
"""  # noqa: S608
    return sql, tuple(defaulted)


def _default_params(defaulted: tuple[Any, ...]) -> list[Any]:
    return [f.get_db_prep_save(f.get_default(), connection) for f in defaulted]


@functools.cache
def _constant_defaults() -> list[Any] | None:
    """The defaulted columns' parameters, built once when none of their defaults is
    computed per call (a callable): they are most of the statement's per-call setup."""
    _, defaulted = _statement()  # the same fields in both variants
    # `dict` and `list` (a JSONField's empty default) give the same parameter every time.
    if any(
        f.has_default() and callable(f.default) and f.default not in (dict, list) for f in defaulted
    ):
        return None
    return _default_params(defaulted)


class PgInsertResult(NamedTuple):
    stored: set[str]  # the event ids stored
    # For each event skipped because its ref exists, the id of the event that holds
    # the ref (None when this statement could not see it).
    skipped: dict[str, str | None]
    # The ids allotted to new customers whose external or anonymous id a concurrent
    # request created first: the events stored for them point at no customer, so the
    # caller must not commit.
    customers_taken: set[str]
    # The event ids left out because their new identifier is on the suppression list.
    suppressed: set[str]


class SuppressionCheck(NamedTuple):
    """One new identifier to look up in the suppression list, with its keyed hash."""

    new_customer: str
    anonymous: bool
    kind: str  # external_id | anonymous_id
    digest: str


def pg_insert_events(
    prepared: list[PreparedEvent], suppression: list[SuppressionCheck] | None = None
) -> PgInsertResult:
    """Insert `prepared`, their property records and the new customers they name (only
    for the events stored), in one statement. `suppression`: the new identifiers to
    check against the suppression list first (their events are left out when listed)."""
    sql, defaulted = _statement(suppression is not None)
    defaults = _constant_defaults()
    checks = [] if suppression is None else [_encode([c._asdict() for c in suppression]).decode()]
    params = [_encode(prepared).decode(), *checks, *(defaults or _default_params(defaulted))]
    # Prepared on the connection (project.sql): PostgreSQL stops re-planning the CTE on
    # every request -- most of its CPU for a single event.
    rows = fetch_all(sql, params)
    stored = {row_id for row_id, was_stored, _ in rows if was_stored}
    skipped = {row_id: other for row_id, was_stored, other in rows if was_stored is False}
    taken = {row_id for row_id, was_stored, other in rows if was_stored is None and other}
    suppressed = {row_id for row_id, was_stored, other in rows if was_stored is None and not other}
    return PgInsertResult(stored, skipped, taken, suppressed)


CUSTOMER_NAMED_BY = ("id", "external", "anonymous")


def pg_insert_single(
    prepared: PreparedEvent,
    *,
    references: tuple[str, list[Any]],
    fingerprint: str,
    customer_by: str,
    customer: str,
) -> tuple[str, str | None]:
    """Insert one event as `pg_insert_events` does, if the rows of `references` (SQL,
    parameters) still read as `fingerprint` and the customer named `customer` by
    `customer_by` (one of CUSTOMER_NAMED_BY) exists; the event's customer is that one.
    Returns ("stored", the customer id), ("duplicate", the id of the event holding its
    ref, None if this statement could not see it), or, with nothing inserted,
    ("stale", None) when the references changed and ("no customer", None)."""
    sql, defaulted = _statement(references=references[0])
    # The event's defaulted fields come first in both lists.
    defaults = _constant_defaults()
    defaults = None if defaults is None else defaults[: len(defaulted)]
    params = [
        *references[1],
        fingerprint,
        _encode([prepared]).decode(),
        customer_by,
        customer,
        *(defaults or _default_params(defaulted)),
    ]
    for row_id, was_stored, other in fetch_all(sql, params):
        if row_id == prepared.id:
            if was_stored:
                return "stored", other
            if was_stored is False:
                return "duplicate", other
            return ("stale" if other else "no customer"), None
    raise AssertionError("the single insert answered nothing for its event")
