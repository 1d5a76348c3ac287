"""Event ingestion: judging events and storing them.

The path of an event: the API decodes an `EventCreateIn` (events_app.schemas),
then `event_ingest` / `events_ingest_batch` resolve its type and customer,
validate its property records against the type's definitions (the reads this
needs: events_app.ingest_references) and store everything in one transaction,
with what the ingest hook plans for the events (events_app.ingest_hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from customers.services import customers_ensure
from events_app.ingest_hooks import (
    PreparedEvent,
    ingest_companions,
    ingest_hook,
    ingest_plan_apply,
)
from events_app.ingest_pg import pg_insert_events
from events_app.ingest_references import TypeInfo, references_read
from events_app.models import Event, PropertyRecord
from events_app.schemas import EventCreateIn, event_data_decode
from project.errors import ConflictError, ValidationFailed
from project.ids import new_public_ids

REF_EXISTS = "Event ref already exists."


@dataclass(slots=True)
class InvalidEvent:
    index: int
    error: str
    details: dict[str, list[str]]
    event_id: str | None = None  # the existing event, for duplicate refs


@dataclass(slots=True)
class StoreResult:
    """What `events_store` did: the events stored and the ref duplicates it skipped."""

    stored: list[PreparedEvent]
    duplicates: list[InvalidEvent]


def _decode_data(value: dict[str, Any] | str) -> dict[str, Any]:
    return event_data_decode(value)


def _check_records(
    info: TypeInfo, records: list[Any], errors: dict[str, list[str]]
) -> list[tuple[str, str]]:
    """The records as (property_id, canonical text); problems go into `errors`.

    Runs for every event of a batch: the common case (known, distinct, valid)
    takes the fewest steps; messages are only built on failure.
    """
    out: list[tuple[str, str]] = []
    definitions = info.definitions
    for position, record in enumerate(records):
        property_id = record.property_id
        definition = definitions.get(property_id)
        if definition is None:
            errors.setdefault(f"property_records[{position}].property_id", []).append(
                f"Unknown property '{property_id}' for event type '{info.key}'."
            )
            continue
        try:
            out.append((property_id, definition.to_text(record.property_value)))
        except ValueError as exc:
            errors.setdefault(f"property_records[{position}].property_value", []).append(
                f"Property '{property_id}' {exc}."
            )
    if len(out) > 1:
        given = [property_id for property_id, _ in out]
        if len(set(given)) < len(given):
            _report_repeats(records, errors)
    if info.required:
        present = {record.property_id for record in records}
        for property_id in info.required:
            if property_id not in present:
                errors.setdefault("property_records", []).append(
                    f"Required property '{property_id}' is missing."
                )
    return out


def _report_repeats(records: list[Any], errors: dict[str, list[str]]) -> None:
    seen: set[str] = set()
    for position, record in enumerate(records):
        if record.property_id in seen:
            errors.setdefault(f"property_records[{position}].property_id", []).append(
                f"Property '{record.property_id}' is given more than once."
            )
        seen.add(record.property_id)


def events_prepare(
    *, items: list[EventCreateIn], received_at: datetime | None = None
) -> tuple[list[PreparedEvent], list[InvalidEvent]]:
    """Judge each item on its own: resolve type and customer, validate properties, refs.

    Returns the events ready to insert and the invalid ones with their reasons.
    Unknown customer external ids are created here (an integration does not
    have to create customers first). A ref repeated inside `items` makes every
    repeat after the first invalid; refs already stored are found by `events_store`.
    """
    prepared, invalid, _ = _prepare(items, received_at, with_facts=False)
    return prepared, invalid


def _prepare(
    items: list[EventCreateIn], received_at: datetime | None, *, with_facts: bool
) -> tuple[list[PreparedEvent], list[InvalidEvent], Any]:
    """`events_prepare`, and with `with_facts` the ingest hook's facts for `events_store`
    read by the same statement (the API's path: one round trip fewer per request)."""
    received_at = received_at or timezone.now()
    refs = references_read([item.event for item in items], with_facts=with_facts)
    ids = new_public_ids(len(items))
    by_id, by_key, known_customers = refs.types_by_id, refs.types_by_key, refs.customer_ids

    prepared: list[PreparedEvent] = []
    invalid: list[InvalidEvent] = []
    pending_external: list[tuple[PreparedEvent, str]] = []
    for index, item in enumerate(items):
        event_in = item.event
        errors: dict[str, list[str]] = {}
        info: TypeInfo | None = None
        if bool(event_in.event_type_id) == bool(event_in.event_type):
            errors["event.event_type_id"] = ["Give exactly one of event_type_id or event_type."]
        elif event_in.event_type_id:
            info = by_id.get(event_in.event_type_id)
            if info is None:
                errors["event.event_type_id"] = [f"Unknown event type '{event_in.event_type_id}'."]
        else:
            info = by_key.get(event_in.event_type or "")
            if info is None:
                errors["event.event_type"] = [f"Unknown event type key '{event_in.event_type}'."]
        if bool(event_in.customer_id) == bool(event_in.customer_external_id):
            errors["event.customer_id"] = [
                "Give exactly one of customer_id or customer_external_id."
            ]
        elif event_in.customer_id and event_in.customer_id not in known_customers:
            errors["event.customer_id"] = [f"Unknown customer '{event_in.customer_id}'."]
        try:
            data = _decode_data(event_in.data)
        except ValueError as exc:
            errors["event.data"] = [f"data {exc}."]
            data = {}
        records = _check_records(info, item.property_records, errors) if info else []
        if errors:
            first_field, messages = next(iter(errors.items()))
            invalid.append(InvalidEvent(index, f"{first_field}: {messages[0]}", errors))
            continue
        assert info is not None
        occurred_at = event_in.occurred_at or received_at
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=UTC)
        ready = PreparedEvent(
            id=ids[index],
            index=index,
            event_type_id=info.id,
            customer_id=event_in.customer_id or "",
            external_id=event_in.external_id,
            secondary_external_id=event_in.secondary_external_id,
            data=data,
            occurred_at=occurred_at,
            created_at=received_at,
            records=records,
        )
        prepared.append(ready)
        if event_in.customer_external_id:
            pending_external.append((ready, event_in.customer_external_id))

    if pending_external:
        mapping = refs.customers_by_external_id
        missing = {ext for _, ext in pending_external} - mapping.keys()
        if missing:
            mapping.update(customers_ensure(external_ids=missing))
        for ready, ext in pending_external:
            ready.customer_id = mapping[ext]

    prepared, repeats = _split_repeated_refs(prepared)
    invalid.extend(repeats)
    invalid.sort(key=lambda i: i.index)
    return prepared, invalid, refs.facts


def _ref_exists(index: int, event_id: str | None) -> InvalidEvent:
    return InvalidEvent(index, REF_EXISTS, {"event.external_id": [REF_EXISTS]}, event_id=event_id)


def _split_repeated_refs(
    prepared: list[PreparedEvent],
) -> tuple[list[PreparedEvent], list[InvalidEvent]]:
    """A ref given twice in one batch: the first wins, the repeats point at its id."""
    first: dict[tuple[str, str], str] = {}
    keep: list[PreparedEvent] = []
    repeats: list[InvalidEvent] = []
    for ready in prepared:
        if ready.external_id is None:
            keep.append(ready)
            continue
        key = (ready.event_type_id, ready.external_id)
        if key in first:
            repeats.append(_ref_exists(ready.index, first[key]))
            continue
        first[key] = ready.id
        keep.append(ready)
    return keep, repeats


def _existing_refs(events: list[PreparedEvent]) -> dict[tuple[str, str | None], str]:
    """(event_type_id, external_id) → stored event id, for the refs of `events`."""
    query = Q()
    for type_id in {e.event_type_id for e in events}:
        refs = {e.external_id for e in events if e.event_type_id == type_id}
        query |= Q(event_type_id=type_id, external_id__in=refs)
    return {
        (type_id, ref): event_id
        for event_id, type_id, ref in Event.objects.filter(query).values_list(
            "id", "event_type_id", "external_id"
        )
    }


def events_store(*, prepared: list[PreparedEvent], facts: Any = None) -> StoreResult:
    """Insert prepared events, their property records and what the ingest hook plans
    for them in one transaction.

    Refs are unique per event type forever. An event whose ref is already stored
    (also by a concurrent request that committed first) is not stored and comes
    back in `duplicates` with the stored event's id; nothing raises, so a batch is
    never half written. A database failure raises and stores none of the batch.
    `facts`: the ingest hook's facts when the caller read them with its references
    (read here otherwise: not cached, so a change made in another process applies
    to this very insert).
    """
    if not prepared:
        return StoreResult([], [])
    holders: dict[str, str | None] = {}
    # The hook's flags and companion rows are written by the insert itself: no
    # UPDATE follows it, and nothing is read back.
    ingest_plan_apply(prepared, facts)
    if connection.vendor == "postgresql":
        # One statement, so one transaction by itself: no BEGIN/COMMIT round trips (a
        # third of a single POST's database time). A write added here must join that
        # statement or wrap itself and it in transaction.atomic().
        stored_ids, holders = pg_insert_events(prepared)
    else:
        with transaction.atomic():
            stored_ids = _orm_insert_events(prepared)
    hook = ingest_hook()
    if hook is not None:
        # Its side effects run on commit of the caller's transaction if there is one
        # (an emit_event action), else now -- the rows are committed already.
        hook.handover([p for p in prepared if p.id in stored_ids])
    if len(stored_ids) == len(prepared):
        return StoreResult(prepared, [])
    stored = [p for p in prepared if p.id in stored_ids]
    skipped = [p for p in prepared if p.id not in stored_ids]
    unresolved = [p for p in skipped if holders.get(p.id) is None]
    existing = _existing_refs(unresolved) if unresolved else {}
    duplicates = [
        _ref_exists(p.index, holders.get(p.id) or existing.get((p.event_type_id, p.external_id)))
        for p in skipped
    ]
    return StoreResult(stored, duplicates)


def _orm_insert_events(prepared: list[PreparedEvent]) -> set[str]:
    """The portable path (SQLite): skip stored refs, then bulk_create."""
    with_ref = [p for p in prepared if p.external_id is not None]
    existing = _existing_refs(with_ref) if with_ref else {}
    fresh = [p for p in prepared if (p.event_type_id, p.external_id) not in existing]
    Event.objects.bulk_create([p.as_event() for p in fresh])
    PropertyRecord.objects.bulk_create(
        [
            PropertyRecord(event_id=p.id, property_id=pid, property_value=value)
            for p in fresh
            for pid, value in p.records
        ]
    )
    for companion in ingest_companions():
        rows = [
            companion.build(row, p)
            for p in fresh
            if p.companions
            for row in p.companions.get(companion.name, ())
        ]
        companion.model._default_manager.bulk_create(rows)
    return {p.id for p in fresh}


@dataclass(slots=True)
class BatchResult:
    stored: list[PreparedEvent]
    invalid: list[InvalidEvent]  # sorted by index


def events_ingest_batch(*, items: list[EventCreateIn]) -> BatchResult:
    """Judge each event on its own and store the valid ones in one transaction.

    Indexes in the result are positions in `items`. Invalid events (bad input,
    unknown type or customer, ref already stored or repeated) are not stored.
    """
    prepared, invalid, facts = _prepare(items, None, with_facts=True)
    result = events_store(prepared=prepared, facts=facts)
    if result.duplicates:
        invalid = sorted([*invalid, *result.duplicates], key=lambda i: i.index)
    return BatchResult(result.stored, invalid)


def event_ingest(*, item: EventCreateIn) -> str:
    """Store one event and return its id. Invalid input is a 400; a ref that exists is a 409."""
    prepared, invalid, facts = _prepare([item], None, with_facts=True)
    if not invalid:
        result = events_store(prepared=prepared, facts=facts)
        if result.stored:
            return result.stored[0].id
        invalid = result.duplicates
    problem = invalid[0]
    if problem.error == REF_EXISTS:
        raise ConflictError(REF_EXISTS, extra={"event_id": problem.event_id})
    raise ValidationFailed(problem.error, details=problem.details)
