"""A single POST /events in one statement (PostgreSQL): the common case, taken first.

The general path (events_app.ingestion) reads what judging an event needs -- its type
with the property definitions, its customer, the ingest hook's facts -- in one
statement and inserts in a second. For the common single POST (a known type, a
customer that exists) this module makes it one statement:

1. The type with its definitions and the hook's facts are kept per process, keyed by
   how the event names its type, together with their rows as text (the fingerprint),
   read once by the general read's own SQL (`types_and_facts_query`).
2. The event is judged against them by the general path's own code
   (`ingestion._prepare` with these references), the customer taken as named.
3. One insert (`ingest_pg.pg_insert_single`) recomputes the fingerprint from the same
   rows in its own snapshot and resolves the customer (id, external id or anonymous
   id, own identifier before an alias). Only when both hold does it insert, so the
   event is stored exactly as the general path would have stored it then: a type,
   definition, workflow, segment or subscription changed in another process is seen
   by the very next event, as before.

Anything else goes the general path, which answers it as before: an event judged
invalid against the kept references (the 400 then comes from fresh ones), references
that changed (the entry is dropped and read again by the next request), a customer
not found (new, merged away, suppressed), a ref held by an event this snapshot cannot
see, a database error outside a transaction, SQLite. Nothing is written before the
general path runs, so it never sees half of a request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import DatabaseError, connection

from events_app.ingest_hooks import PreparedEvent, ingest_hook
from events_app.ingest_pg import pg_insert_single
from events_app.ingest_references import (
    References,
    references_of_type_rows,
    types_and_facts_query,
)
from events_app.schemas import EventIn
from project.sql import fetch_all

# Distinct ways of naming a type seen by one process; past this the cache starts over
# (a process sees few types; this bounds one fed made-up keys).
_MAX_ENTRIES = 512
# The rows of the types-and-facts read, and their text, in one statement.
_FILL = """WITH r AS MATERIALIZED ({query})
SELECT r.*, (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM r x) FROM r"""


@dataclass(frozen=True, slots=True)
class KeptReferences:
    """The type and facts one way of naming a type reads, as read at `fingerprint`."""

    references: References
    query: tuple[str, list[Any]]
    fingerprint: str


STORED, DUPLICATE, NEW_CUSTOMER, GENERAL = "stored", "duplicate", "new customer", "general"


class SingleOutcome(NamedTuple):
    """What the one statement did: STORED; DUPLICATE (its ref is held by `holder`);
    nothing, and the event goes on NEW_CUSTOMER (its identifier names no customer) or
    by the GENERAL path."""

    outcome: str
    holder: str | None = None


_kept: dict[tuple[int, str, str], KeptReferences] = {}
_lock = threading.Lock()


def _customer_named(event: EventIn) -> tuple[str, str] | None:
    """How the event names its customer, if by exactly one identifier."""
    named = [
        (by, value)
        for by, value in (
            ("id", event.customer_id),
            ("external", event.customer_external_id),
            ("anonymous", event.anonymous_id),
        )
        if value
    ]
    return named[0] if len(named) == 1 else None


def _key(event: EventIn) -> tuple[int, str, str] | None:
    if bool(event.event_type_id) == bool(event.event_type):
        return None
    hook = id(ingest_hook())
    return (
        (hook, "id", event.event_type_id)
        if event.event_type_id
        else (hook, "key", event.event_type or "")
    )


def kept_references(event: EventIn) -> tuple[References, KeptReferences] | None:
    """The references to judge `event` by on the one-statement path (its customer taken
    as named, resolved by the insert), or None when it must take the general path."""
    if connection.vendor != "postgresql":
        return None
    named = _customer_named(event)
    key = _key(event)
    if named is None or key is None:
        return None
    kept = _kept.get(key)
    if kept is None:
        kept = _read(event, key)
        if kept is None:
            return None
    shared = kept.references
    by, value = named
    references = References(
        shared.types_by_id,
        shared.types_by_key,
        {value} if by == "id" else set(),
        {value: ""} if by == "external" else {},
        {value: ""} if by == "anonymous" else {},
        facts=shared.facts,
    )
    return references, kept


def _read(event: EventIn, key: tuple[int, str, str]) -> KeptReferences | None:
    query = types_and_facts_query([event])
    if query is None:
        return None
    rows = fetch_all(_FILL.format(query=query[0]), query[1])
    if not rows:
        return None
    references = references_of_type_rows([row[:-1] for row in rows])
    if not references.types_by_id:  # an unknown type: the general path's 400
        return None
    kept = KeptReferences(references, query, rows[0][-1])
    with _lock:
        if len(_kept) >= _MAX_ENTRIES:
            _kept.clear()
        _kept[key] = kept
    return kept


def kept_references_forget() -> None:
    """Drop every kept entry (tests; they are checked at every insert anyway)."""
    with _lock:
        _kept.clear()


def event_store_single(
    prepared: PreparedEvent, event: EventIn, kept: KeptReferences
) -> SingleOutcome:
    """Insert `prepared` (judged against `kept`) in one statement."""
    named = _customer_named(event)
    assert named is not None
    try:
        outcome, value = pg_insert_single(
            prepared,
            references=kept.query,
            fingerprint=kept.fingerprint,
            customer_by=named[0],
            customer=named[1],
        )
    except DatabaseError:
        # Inside a caller's transaction the failed statement has aborted it: only its
        # owner can take that back. Outside, nothing was written: the general path
        # meets the same refusal and answers it as it always has.
        if connection.in_atomic_block:
            raise
        return SingleOutcome(GENERAL)
    if outcome == "stored":
        assert value is not None
        prepared.customer_id = value
        return SingleOutcome(STORED)
    if outcome == "duplicate":
        # None: held by an event committed after this snapshot, looked up there.
        return SingleOutcome(DUPLICATE, value) if value is not None else SingleOutcome(GENERAL)
    if outcome == "stale":
        key = _key(event)
        with _lock:
            if key is not None and _kept.get(key) is kept:
                del _kept[key]
        return SingleOutcome(GENERAL)
    # No customer has the identifier, as its own or as an alias: a new external or
    # anonymous id (a customer id is unknown or merged away: the general path).
    return SingleOutcome(NEW_CUSTOMER if named[0] != "id" else GENERAL)


def references_new_customer(references: References) -> References:
    """`references` (of `kept_references`) with the customer found by no one: judged
    with them, the event is given a new customer, created with it by the general
    insert, which also checks the suppression list (events_app.ingest_store)."""
    return References(
        references.types_by_id, references.types_by_key, set(), {}, {}, facts=references.facts
    )
