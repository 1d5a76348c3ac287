"""Storing judged events (events_app.ingestion): one statement, and what it refuses.

`events_store` writes a batch atomically: its events (with the flags the ingest hook
planned), their property records and the customers they name by a new external or
anonymous id -- one
statement on PostgreSQL (events_app.ingest_pg), one transaction elsewhere. Either
all of it is written or, when it raises, nothing.

`events_store_isolating` is the API's door: when the database refuses the
statement for a value one event carries (that events_app.storable did not foresee),
it finds which events are refused by storing halves of the batch under savepoints
of one transaction, reports those and stores the rest, instead of failing them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q

from customers.identity.selectors import customers_moved_to
from customers.models import Customer
from customers.privacy.hashing import IdentifierKind, identifier_digest
from customers.privacy.locks import suppression_locks_take
from customers.privacy.models import SuppressedIdentifier
from events_app.ingest_hooks import PreparedEvent, ingest_hook, ingest_plan_apply
from events_app.ingest_pg import SuppressionCheck, pg_insert_events
from events_app.models import Event, EventRef, PropertyRecord
from events_app.partitions.ondemand import partitions_cover

REF_EXISTS = "Event ref already exists."
# The refusal of an event whose external or anonymous id is on the suppression list:
# the error of its `invalid_events` item, the message of a single POST's 403.
CUSTOMER_SUPPRESSED = "customer is suppressed"
# A new customer's external (or anonymous) id taken by a concurrent request between the
# reference read and the insert: the insert is retried with the winner's id. A second loss
# needs the winner deleted in between; a third is not worth waiting for.
_CUSTOMER_ATTEMPTS = 3
# SQLSTATE classes of a refusal caused by what the statement carries, not by the
# database's state: data exceptions (22: bad text, out-of-range value) and program
# limits (54: e.g. JSON nested deeper than the server's stack allows).
_REFUSAL_CLASSES = ("22", "54")


@dataclass(slots=True)
class InvalidEvent:
    index: int
    error: str
    details: dict[str, list[str]]
    event_id: str | None = None  # the existing event, for duplicate refs


@dataclass(slots=True)
class StoreResult:
    """What `events_store` did: the events stored, the ref duplicates it skipped and
    the events it refused because their new identifier was suppressed meanwhile."""

    stored: list[PreparedEvent]
    duplicates: list[InvalidEvent]
    suppressed: list[InvalidEvent] = field(default_factory=list)


def ref_exists(index: int, event_id: str | None) -> InvalidEvent:
    return InvalidEvent(index, REF_EXISTS, {"event.external_id": [REF_EXISTS]}, event_id=event_id)


def customer_suppressed(index: int, field: str) -> InvalidEvent:
    """The refusal of an event naming a suppressed identifier (`field`: which one)."""
    return InvalidEvent(index, CUSTOMER_SUPPRESSED, {field: [CUSTOMER_SUPPRESSED]})


def _suppressed_refusal(p: PreparedEvent) -> InvalidEvent:
    field = "event.anonymous_id" if p.new_customer_anonymous else "event.customer_external_id"
    return customer_suppressed(p.index, field)


class _CustomersTaken(Exception):
    """The ids allotted to new customers whose external or anonymous id a concurrent
    request created first."""

    def __init__(self, customer_ids: set[str]) -> None:
        super().__init__(sorted(customer_ids))
        self.customer_ids = customer_ids


def _existing_refs(events: list[PreparedEvent]) -> dict[tuple[str, str | None], str]:
    """(event_type_id, external_id) → the id of the event holding it, for the refs of
    `events`: from EventRef on PostgreSQL (refs outlive partitions dropped by
    retention), from the events elsewhere."""
    postgresql = connection.vendor == "postgresql"
    ref_field = "ref" if postgresql else "external_id"
    query = Q()
    for type_id in {e.event_type_id for e in events}:
        refs = {e.external_id for e in events if e.event_type_id == type_id}
        query |= Q(event_type_id=type_id, **{f"{ref_field}__in": refs})
    rows = (
        EventRef.objects.filter(query).values_list("event_id", "event_type_id", "ref")
        if postgresql
        else Event.objects.filter(query).values_list("id", "event_type_id", "external_id")
    )
    return {(type_id, ref): event_id for event_id, type_id, ref in rows}


def events_store(*, prepared: list[PreparedEvent], facts: Any = None) -> StoreResult:
    """Insert prepared events, their property records, the customers they create and
    what the ingest hook plans for them in one transaction.

    Refs are unique per event type forever. An event whose ref is already stored
    (also by a concurrent request that committed first) is not stored and comes
    back in `duplicates` with the stored event's id; nothing raises, so a batch is
    never half written. A customer is created only with an event stored; when a
    concurrent request created the same external or anonymous id first, the insert is
    retried with that customer. An event whose new identifier a suppress request listed
    after the reference read is not stored and comes back in `suppressed`
    (customers.privacy.locks). A database failure raises and stores none of the batch.
    `facts`: the ingest hook's facts when the caller read them with its references
    (read here otherwise: not cached, so a change made in another process applies
    to this very insert).
    """
    if not prepared:
        return StoreResult([], [])
    partitions_cover(p.created_at for p in prepared)  # a month without one: made first
    for attempt in range(1, _CUSTOMER_ATTEMPTS + 1):
        # The hook's flags are written by the insert itself: no UPDATE follows it, and
        # nothing is read back. Planned again on a retry: a customer found existing
        # after all is no longer new.
        ingest_plan_apply(prepared, facts)
        try:
            stored_ids, holders, suppressed_ids = _insert(prepared)
            break
        except _CustomersTaken as taken:
            if attempt == _CUSTOMER_ATTEMPTS:
                raise IntegrityError(f"Customers taken concurrently: {taken}") from None
            _customers_reread(prepared, taken.customer_ids)
            _customers_merged_follow(prepared)
        except IntegrityError as exc:
            if (
                attempt == _CUSTOMER_ATTEMPTS
                or getattr(exc.__cause__, "sqlstate", None) != "23503"
                or not _customers_merged_follow(prepared)
            ):
                raise
    hook = ingest_hook()
    if hook is not None:
        # Its side effects run on commit of the caller's transaction if there is one
        # (an emit_event action), else now -- the rows are committed already.
        hook.handover([p for p in prepared if p.id in stored_ids])
    if len(stored_ids) == len(prepared):
        return StoreResult(prepared, [])
    stored = [p for p in prepared if p.id in stored_ids]
    suppressed = [_suppressed_refusal(p) for p in prepared if p.id in suppressed_ids]
    skipped = [p for p in prepared if p.id not in stored_ids and p.id not in suppressed_ids]
    unresolved = [p for p in skipped if holders.get(p.id) is None]
    existing = _existing_refs(unresolved) if unresolved else {}
    duplicates = [
        ref_exists(p.index, holders.get(p.id) or existing.get((p.event_type_id, p.external_id)))
        for p in skipped
    ]
    return StoreResult(stored, duplicates, suppressed)


def _suppression_checks(prepared: list[PreparedEvent]) -> list[SuppressionCheck]:
    """The new identifiers of `prepared` with their keyed hashes, once each."""
    new = {(p.new_customer, p.new_customer_anonymous) for p in prepared if p.new_customer}
    checks = []
    for value, anonymous in sorted(new):
        kind: IdentifierKind = "anonymous_id" if anonymous else "external_id"
        checks.append(SuppressionCheck(value, anonymous, kind, identifier_digest(kind, value)))
    return checks


def _insert(prepared: list[PreparedEvent]) -> tuple[set[str], dict[str, str | None], set[str]]:
    """The ids stored, per ref duplicate skipped the holder's id (if seen), and the ids
    refused because their new identifier is suppressed."""
    creates = {p.customer_id for p in prepared if p.new_customer}
    if connection.vendor != "postgresql":
        with transaction.atomic():
            stored, suppressed = _orm_insert_events(prepared)
            return stored, {}, suppressed
    if not creates:
        # One statement, so one transaction by itself: no BEGIN/COMMIT round trips (a
        # large part of a single POST's database time). A write added here must join
        # that statement or wrap itself and it in transaction.atomic().
        result = pg_insert_events(prepared)
        return result.stored, result.skipped, result.suppressed
    # Creating customers: the suppression locks of their identifiers first, in a
    # statement of their own, then the insert, whose snapshot sees any suppression
    # committed before the locks were granted (customers.privacy.locks). A transaction
    # (or, in the caller's, a savepoint) around both holds the locks until commit and
    # takes back an insert whose customer a concurrent request created first.
    checks = _suppression_checks(prepared)
    try:
        with transaction.atomic():
            suppression_locks_take([c.digest for c in checks], shared=True)
            result = pg_insert_events(prepared, checks)
            if result.customers_taken:
                raise _CustomersTaken(result.customers_taken)
    except IntegrityError as exc:
        # The foreign key, checked at commit: a concurrent request created the customer
        # first and this statement did not see it.
        if getattr(exc.__cause__, "sqlstate", None) == "23503":
            raise _CustomersTaken(creates) from None
        raise
    return result.stored, result.skipped, result.suppressed


def _customers_merged_follow(prepared: list[PreparedEvent]) -> bool:
    """Point the events of customers that a merge removed between the reference read and
    the insert at the customer they were merged into (customers.identity: the merge
    locks both customers, so the insert's foreign-key check waited for it and then
    failed); True when any event was re-pointed, so the insert is worth retrying."""
    moved = customers_moved_to({p.customer_id for p in prepared if not p.new_customer})
    for p in prepared:
        if p.customer_id in moved and not p.new_customer:
            p.customer_id = moved[p.customer_id]
    return bool(moved)


def _customers_reread(prepared: list[PreparedEvent], allotted: set[str]) -> None:
    """Point the events of the new customers `allotted` at the customers that exist now
    with their external or anonymous id."""
    taken = [p for p in prepared if p.new_customer and p.customer_id in allotted]
    anonymous = {p.new_customer for p in taken if p.new_customer_anonymous}
    external = {p.new_customer for p in taken if not p.new_customer_anonymous}
    found: dict[tuple[bool, str | None], str] = {}
    rows = Customer.objects.filter(
        Q(external_id__in=external) | Q(anonymous_id__in=anonymous)
    ).values_list("id", "external_id", "anonymous_id")
    for customer_id, external_id, anonymous_id in rows:
        if external_id in external:
            found[(False, external_id)] = customer_id
        if anonymous_id in anonymous:
            found[(True, anonymous_id)] = customer_id
    for p in taken:
        winner = found.get((p.new_customer_anonymous, p.new_customer))
        if winner is not None:
            p.customer_id, p.new_customer, p.new_customer_anonymous = winner, None, False


def _orm_insert_events(prepared: list[PreparedEvent]) -> tuple[set[str], set[str]]:
    """The portable path (SQLite), in the caller's transaction: leave out the events of
    suppressed new identifiers, skip stored refs, create the customers of the events
    stored, then bulk_create. The ids stored and those refused as suppressed."""
    suppressed = _orm_suppressed(prepared)
    with_ref = [p for p in prepared if p.external_id is not None and p.id not in suppressed]
    existing = _existing_refs(with_ref) if with_ref else {}
    fresh = [
        p
        for p in prepared
        if (p.event_type_id, p.external_id) not in existing and p.id not in suppressed
    ]
    new = {p.customer_id: p for p in fresh if p.new_customer}
    if new:
        external = {p.new_customer: cid for cid, p in new.items() if not p.new_customer_anonymous}
        anonymous = {p.new_customer: cid for cid, p in new.items() if p.new_customer_anonymous}
        rows = Customer.objects.filter(
            Q(external_id__in=external) | Q(anonymous_id__in=anonymous)
        ).values_list("external_id", "anonymous_id")
        taken = {external[ext] for ext, _ in rows if ext in external} | {
            anonymous[anon] for _, anon in rows if anon in anonymous
        }
        if taken:
            raise _CustomersTaken(taken)
        Customer.objects.bulk_create(
            [
                Customer(id=cid, external_id=p.new_customer)
                if not p.new_customer_anonymous
                else Customer(id=cid, external_id=None, anonymous_id=p.new_customer)
                for cid, p in sorted(new.items())
            ]
        )
    Event.objects.bulk_create([p.as_event() for p in fresh])
    PropertyRecord.objects.bulk_create(
        [
            PropertyRecord(
                event_id=p.id, property_id=pid, property_value=value, created_at=p.created_at
            )
            for p in fresh
            for pid, value in p.records
        ]
    )
    return {p.id for p in fresh}, suppressed


def _orm_suppressed(prepared: list[PreparedEvent]) -> set[str]:
    """The ids of the events whose new identifier is on the suppression list now."""
    checks = _suppression_checks(prepared)
    if not checks:
        return set()
    query = Q()
    for check in checks:
        query |= Q(kind=check.kind, digest=check.digest)
    listed = set(SuppressedIdentifier.objects.filter(query).values_list("kind", "digest"))
    refused = {(c.new_customer, c.anonymous) for c in checks if (c.kind, c.digest) in listed}
    return {p.id for p in prepared if (p.new_customer, p.new_customer_anonymous) in refused}


# ---------------------------------------------------------------- refusals


def _refusal(exc: DatabaseError) -> str | None:
    """The database's reason when `exc` refuses what the statement carries, else None."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or ""
    if sqlstate[:2] not in _REFUSAL_CLASSES:
        return None
    diag = getattr(cause, "diag", None)
    return getattr(diag, "message_primary", None) or str(cause).splitlines()[0]


def events_store_isolating(
    *, prepared: list[PreparedEvent], facts: Any = None
) -> tuple[StoreResult, list[InvalidEvent]]:
    """`events_store`, except that the events the database refuses are returned as
    invalid and the others stored.

    The common case is one statement. When it is refused (nothing was written), the
    batch is split in halves, each stored under its own savepoint of one transaction,
    and a refused half split again, down to the single refused events: a few dozen
    statements for one bad event among a thousand. Any other failure raises and
    stores nothing. Inside a caller's transaction a refusal raises as well: the
    statement has failed that transaction, which only its owner can take back.
    """
    try:
        return events_store(prepared=prepared, facts=facts), []
    except DatabaseError as exc:
        if _refusal(exc) is None or connection.in_atomic_block:
            raise
    stored: list[PreparedEvent] = []
    duplicates: list[InvalidEvent] = []
    suppressed: list[InvalidEvent] = []
    refused: list[InvalidEvent] = []
    with transaction.atomic():
        chunks = [prepared]
        while chunks:
            chunk = chunks.pop()
            try:
                with transaction.atomic():
                    result = events_store(prepared=chunk, facts=facts)
            except DatabaseError as exc:
                reason = _refusal(exc)
                if reason is None:
                    raise
                if len(chunk) > 1:
                    half = len(chunk) // 2
                    chunks += [chunk[half:], chunk[:half]]
                    continue
                message = f"The database refused this event: {reason}."
                refused.append(
                    InvalidEvent(chunk[0].index, f"event: {message}", {"event": [message]})
                )
                continue
            stored += result.stored
            duplicates += result.duplicates
            suppressed += result.suppressed
    stored.sort(key=lambda p: p.index)
    return StoreResult(stored, duplicates, suppressed), refused
