"""Event ingestion: judging events and storing them.

The path of an event: the API decodes an `EventCreateIn` (events_app.schemas),
then `event_ingest` / `events_ingest_batch` resolve its type and customer,
validate its property records against the type's definitions (the reads this
needs: events_app.ingest_references) and what the database could not store
(events_app.storable), and store everything in one transaction, with what the
ingest hook plans for the events (events_app.ingest_hooks).

What is refused writes nothing: a customer named by a new `customer_external_id`
or `anonymous_id` (then an anonymous customer: no external id) is created by the
insert itself, only with an event that is stored (a 400, a 403, a 409, an item of
`invalid_events` creates none), and a request that fails stores nothing. An external
or anonymous id may also be an alias (customers.models.CustomerAlias): its events land
on the customer it resolves to. An identifier on the suppression list
(customers.privacy) is never created again: its events are refused
(`CUSTOMER_SUPPRESSED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from customers.identity.selectors import customers_moved_to
from customers.models import Customer
from events_app.ingest_hooks import PreparedEvent, ingest_hook, ingest_plan_apply
from events_app.ingest_references import References, TypeInfo, references_read
from events_app.ingest_single import (
    DUPLICATE,
    NEW_CUSTOMER,
    STORED,
    KeptReferences,
    SingleOutcome,
    event_store_single,
    kept_references,
    references_new_customer,
)
from events_app.ingest_store import (
    CUSTOMER_SUPPRESSED,
    REF_EXISTS,
    InvalidEvent,
    StoreResult,
    customer_suppressed,
    events_store,
    events_store_isolating,
    ref_exists,
)
from events_app.partitions.ondemand import partitions_cover
from events_app.schemas import EventCreateIn, event_data_decode
from events_app.storable import data_problem, event_problems, utc_instant
from project.errors import ConflictError, ForbiddenError, ValidationFailed
from project.ids import new_public_ids

# The store's names, for callers of ingestion (the door: prepare, then store).
__all__ = [
    "CUSTOMER_SUPPRESSED",
    "REF_EXISTS",
    "BatchResult",
    "InvalidEvent",
    "StoreResult",
    "event_ingest",
    "events_ingest_batch",
    "events_prepare",
    "events_store",
]


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
    An unknown customer external id is allotted a customer id here and created by
    `events_store` with the first of its events stored (an integration does not have
    to create customers first; a refused event creates none). A ref repeated inside
    `items` makes every repeat after the first invalid; refs already stored are found
    by `events_store`.
    """
    prepared, invalid, _ = _prepare(items, received_at, with_facts=False)
    return prepared, invalid


def _prepare(
    items: list[EventCreateIn],
    received_at: datetime | None,
    *,
    with_facts: bool,
    api_client_id: int | None = None,
    refs: References | None = None,
) -> tuple[list[PreparedEvent], list[InvalidEvent], Any]:
    """`events_prepare`, and with `with_facts` the ingest hook's facts for `events_store`
    read by the same statement (the API's path: one round trip fewer per request).
    `refs`: the references already known (events_app.ingest_single), not read here."""
    received_at = received_at or timezone.now()
    # What the database could not store is found first: the ids and keys of an item
    # travel in the reference read too, and one bad value would fail it for all.
    unstorable = {index: p for index, item in enumerate(items) if (p := event_problems(item))}
    if refs is None:
        refs = references_read(
            [item.event for index, item in enumerate(items) if index not in unstorable],
            with_facts=with_facts,
        )
    ids = new_public_ids(len(items))
    by_id, by_key, known_customers = refs.types_by_id, refs.types_by_key, refs.customer_ids
    # A customer id that a merge removed names the customer it was merged into
    # (customers.identity); read only when an id is unknown.
    unknown = {
        item.event.customer_id
        for index, item in enumerate(items)
        if index not in unstorable
        and item.event.customer_id
        and item.event.customer_id not in known_customers
    }
    merged_into = customers_moved_to(unknown) if unknown else {}
    if unknown - merged_into.keys():
        # An undone merge re-creates its secondary: an undo that committed after the read
        # above makes an id known again (this query runs only for ids still unknown).
        merged_into |= {
            c: c
            for c in Customer.objects.filter(pk__in=unknown - merged_into.keys()).values_list(
                "pk", flat=True
            )
        }

    prepared: list[PreparedEvent] = []
    invalid: list[InvalidEvent] = []
    # Events naming their customer by external or anonymous id: (event, anonymous?, id).
    pending: list[tuple[PreparedEvent, bool, str]] = []
    for index, item in enumerate(items):
        event_in = item.event
        if index in unstorable:
            _invalid(invalid, index, unstorable[index])
            continue
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
        if (
            bool(event_in.customer_id)
            + bool(event_in.customer_external_id)
            + bool(event_in.anonymous_id)
            != 1
        ):
            errors["event.customer_id"] = [
                "Give exactly one of customer_id, customer_external_id or anonymous_id."
            ]
        elif (
            event_in.customer_id
            and event_in.customer_id not in known_customers
            and event_in.customer_id not in merged_into
        ):
            errors["event.customer_id"] = [f"Unknown customer '{event_in.customer_id}'."]
        try:
            data = event_data_decode(event_in.data)
        except ValueError as exc:
            errors["event.data"] = [f"data {exc}."]
            data = {}
        else:
            if problem := data_problem(data):
                errors["event.data"] = [f"data: {problem}."]
        records = _check_records(info, item.property_records, errors) if info else []
        if errors:
            _invalid(invalid, index, errors)
            continue
        assert info is not None
        ready = PreparedEvent(
            id=ids[index],
            index=index,
            event_type_id=info.id,
            customer_id=merged_into.get(event_in.customer_id or "", event_in.customer_id or ""),
            external_id=event_in.external_id,
            secondary_external_id=event_in.secondary_external_id,
            data=data,
            # Checked by event_problems: in the years 1-9999 in UTC.
            occurred_at=utc_instant(event_in.occurred_at or received_at),
            created_at=received_at,
            records=records,
            api_client_id=api_client_id,
        )
        prepared.append(ready)
        if event_in.customer_external_id:
            pending.append((ready, False, event_in.customer_external_id))
        elif event_in.anonymous_id:
            pending.append((ready, True, event_in.anonymous_id))

    if pending:
        prepared = _resolve_identifiers(prepared, pending, refs, invalid)

    prepared, repeats = _split_repeated_refs(prepared)
    invalid.extend(repeats)
    invalid.sort(key=lambda i: i.index)
    return prepared, invalid, refs.facts


def _resolve_identifiers(
    prepared: list[PreparedEvent],
    pending: list[tuple[PreparedEvent, bool, str]],
    refs: References,
    invalid: list[InvalidEvent],
) -> list[PreparedEvent]:
    """Point the `pending` events at the customers their external or anonymous ids
    resolve to; an unknown id is allotted a new customer (created with the first of its
    events stored), unless it is suppressed: then its events are refused. Returns the
    events still prepared."""
    resolved = (refs.customers_by_external_id, refs.customers_by_anonymous_id)
    suppressed = (refs.suppressed_external_ids, refs.suppressed_anonymous_ids)
    missing = sorted(
        {(anonymous, value) for _, anonymous, value in pending}
        - {(anonymous, value) for anonymous in (False, True) for value in resolved[anonymous]}
    )
    allotted = dict(zip(missing, new_public_ids(len(missing)), strict=True))
    refused: set[str] = set()
    for ready, anonymous, value in pending:
        customer_id = resolved[anonymous].get(value)
        if customer_id is not None:
            ready.customer_id = customer_id
        elif value in suppressed[anonymous]:
            field = "event.anonymous_id" if anonymous else "event.customer_external_id"
            invalid.append(customer_suppressed(ready.index, field))
            refused.add(ready.id)
        else:
            ready.customer_id = allotted[(anonymous, value)]
            ready.new_customer, ready.new_customer_anonymous = value, anonymous
    return [p for p in prepared if p.id not in refused] if refused else prepared


def _invalid(invalid: list[InvalidEvent], index: int, errors: dict[str, list[str]]) -> None:
    first_field, messages = next(iter(errors.items()))
    invalid.append(InvalidEvent(index, f"{first_field}: {messages[0]}", errors))


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
            repeats.append(ref_exists(ready.index, first[key]))
            continue
        first[key] = ready.id
        keep.append(ready)
    return keep, repeats


@dataclass(slots=True)
class BatchResult:
    stored: list[PreparedEvent]
    invalid: list[InvalidEvent]  # sorted by index


def events_ingest_batch(
    *, items: list[EventCreateIn], api_client_id: int | None = None
) -> BatchResult:
    """Judge each event on its own and store the valid ones in one transaction.

    Indexes in the result are positions in `items`. Invalid events (bad input,
    unknown type or customer, a value the database refuses, ref already stored or
    repeated) are not stored, and create no customer. `api_client_id`: who sent them.
    """
    prepared, invalid, facts = _prepare(items, None, with_facts=True, api_client_id=api_client_id)
    result, refused = events_store_isolating(prepared=prepared, facts=facts)
    if result.duplicates or result.suppressed or refused:
        invalid = sorted(
            [*invalid, *result.duplicates, *result.suppressed, *refused], key=lambda i: i.index
        )
    return BatchResult(result.stored, invalid)


def _store_one_statement(
    prepared: list[PreparedEvent], facts: Any, item: EventCreateIn, kept: KeptReferences
) -> SingleOutcome:
    """The common single event in one statement (events_app.ingest_single), with the
    steps of `events_store` around it."""
    partitions_cover([prepared[0].created_at])
    ingest_plan_apply(prepared, facts)
    single = event_store_single(prepared[0], item.event, kept)
    hook = ingest_hook()
    if single.outcome == STORED and hook is not None:
        hook.handover(prepared)
    return single


def event_ingest(*, item: EventCreateIn, api_client_id: int | None = None) -> str:
    """Store one event and return its id. Invalid input is a 400; a ref that exists is a
    409; neither writes anything (not even the customer it names)."""
    refs: References | None = None
    kept = kept_references(item.event)
    if kept is not None:
        prepared, invalid, facts = _prepare(
            [item], None, with_facts=True, api_client_id=api_client_id, refs=kept[0]
        )
        if not invalid:
            single = _store_one_statement(prepared, facts, item, kept[1])
            if single.outcome == STORED:
                return prepared[0].id
            if single.outcome == DUPLICATE:
                raise ConflictError(REF_EXISTS, extra={"event_id": single.holder})
            if single.outcome == NEW_CUSTOMER:
                refs = references_new_customer(kept[0])
    prepared, invalid, facts = _prepare(
        [item], None, with_facts=True, api_client_id=api_client_id, refs=refs
    )
    if not invalid:
        result, refused = events_store_isolating(prepared=prepared, facts=facts)
        if result.stored:
            return result.stored[0].id
        invalid = result.duplicates or result.suppressed or refused
    problem = invalid[0]
    if problem.error == REF_EXISTS:
        raise ConflictError(REF_EXISTS, extra={"event_id": problem.event_id})
    if problem.error == CUSTOMER_SUPPRESSED:
        raise ForbiddenError(CUSTOMER_SUPPRESSED, details=problem.details)
    raise ValidationFailed(problem.error, details=problem.details)
