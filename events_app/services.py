"""Writes for events, event types and API clients.

The path of an event: the API decodes an `EventCreateIn` (events_app.schemas),
then `event_ingest` / `events_ingest_batch` resolve its type and customer,
validate its property records against the type's definitions and store
everything in one transaction.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from automation.delivery import deliveries_create_for_events
from automation.workflow_runs import events_mark_automation
from customers.models import Customer
from customers.services import customers_ensure
from events_app.ingest_pg import pg_insert_events
from events_app.models import ApiClient, Event, EventType, PropertyDefinition, PropertyRecord
from events_app.properties import PROPERTY_TYPES
from events_app.schemas import EventCreateIn, EventIn
from project.errors import ConflictError, NotFoundError, ValidationFailed
from project.ids import new_public_id

REF_EXISTS = "Event ref already exists."

# ---------------------------------------------------------------- API clients

API_KEY_PREFIX = "hrld_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_client_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create an API client and return it with its secret (shown once, never stored)."""
    scopes = scopes or list(ApiClient.ALL_SCOPES)
    unknown = set(scopes) - set(ApiClient.ALL_SCOPES)
    if unknown:
        raise ValidationFailed(f"Unknown scope(s): {', '.join(sorted(unknown))}.")
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            client = ApiClient.objects.create(
                name=name,
                secret_hash=ApiClient.hash_secret(secret),
                secret_prefix=secret[:12],
                scopes=",".join(s for s in ApiClient.ALL_SCOPES if s in scopes),
            )
    except IntegrityError:
        raise ConflictError(f"An API client named '{name}' already exists.") from None
    return client, secret


def api_client_authenticate(*, secret: str, name: str | None = None) -> ApiClient | None:
    """The active client holding this secret (and name, for Basic auth), or None."""
    digest = ApiClient.hash_secret(secret)
    query = ApiClient.objects.filter(secret_hash=digest, revoked_at__isnull=True)
    if name is not None:
        query = query.filter(name=name)
    client = query.first()
    if client is None:
        return None
    now = timezone.now()
    # Record use at one-minute resolution: a write per request would cost more
    # than the request itself.
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return client


def api_client_revoke(*, client: ApiClient) -> None:
    """Revoke a key; requests with it fail with 401 from then on."""
    ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


# ---------------------------------------------------------------- event types


@dataclass(frozen=True)
class PropertyDefinitionInput:
    property_id: str
    name: str = ""
    type: str = PropertyDefinition.ValueType.STRING
    required: bool = False


def _replace_properties(event_type: EventType, properties: list[PropertyDefinitionInput]) -> None:
    ids = [p.property_id for p in properties]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValidationFailed(
            f"Duplicate property_id: {', '.join(duplicates)}.",
            details={"properties": [f"Duplicate property_id '{d}'." for d in duplicates]},
        )
    PropertyDefinition.objects.filter(event_type=event_type).exclude(property_id__in=ids).delete()
    for prop in properties:
        PropertyDefinition.objects.update_or_create(
            event_type=event_type,
            property_id=prop.property_id,
            defaults={"name": prop.name, "value_type": prop.type, "required": prop.required},
        )


def event_type_create(
    *, key: str, name: str, description: str = "", properties: list[PropertyDefinitionInput]
) -> EventType:
    """Create an event type with its property definitions; a taken key is a 409."""
    try:
        with transaction.atomic():
            event_type = EventType.objects.create(key=key, name=name, description=description)
            _replace_properties(event_type, properties)
    except IntegrityError:
        raise ConflictError(f"An event type with key '{key}' already exists.") from None
    return event_type


def event_type_update(
    *,
    event_type: EventType,
    fields: dict[str, Any],
    properties: list[PropertyDefinitionInput] | None = None,
) -> EventType:
    """Update fields and, when given, replace the property definitions as a whole."""
    try:
        with transaction.atomic():
            for name, value in fields.items():
                setattr(event_type, name, value)
            if fields:
                event_type.save(update_fields=[*fields.keys(), "updated_at"])
            if properties is not None:
                _replace_properties(event_type, properties)
    except IntegrityError:
        raise ConflictError(
            f"An event type with key '{fields.get('key')}' already exists."
        ) from None
    return event_type


def event_type_delete(*, event_type: EventType) -> None:
    """Delete an event type that has no events; one with events is a 409."""
    with transaction.atomic():
        if Event.objects.filter(event_type=event_type).exists():
            raise ConflictError(
                "This event type has events and cannot be deleted.",
            )
        event_type.delete()


# ---------------------------------------------------------------- ingestion


@dataclass(slots=True)
class PreparedEvent:
    """An event that passed every check, ready to insert (plain values, no model instance:
    building 1000 Django model instances costs more than inserting them)."""

    index: int
    event_type_id: str
    customer_id: str
    external_id: str | None
    secondary_external_id: str | None
    data: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    records: list[tuple[str, str]] = field(default_factory=list)
    id: str = field(default_factory=new_public_id)


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


class _Definition(NamedTuple):
    property_id: str
    value_type: str
    required: bool


@dataclass(slots=True)
class _TypeInfo:
    id: str
    key: str
    definitions: dict[str, _Definition]


# One round trip for the types named in a request and their property definitions.
# Why no in-process cache: gunicorn workers are separate processes (and Herald may
# run on several machines), so a cached definition can only be trusted after asking
# the database whether it is still current -- a round trip that costs as much as
# this query. Reading fresh rows every request is always correct (an edited type
# applies to the very next event) and replaces the ORM's two queries and model
# instances with plain tuples. See docs/api.md.
_TYPES_SQL = """
SELECT et.id, et.key, pd.property_id, pd.value_type, pd.required
FROM events_app_eventtype et
LEFT JOIN events_app_propertydefinition pd ON pd.event_type_id = et.id
WHERE et.id IN ({ids}) OR et.key IN ({keys})
"""


def _load_types(items: list[EventIn]) -> tuple[dict[str, _TypeInfo], dict[str, _TypeInfo]]:
    ids = sorted({i.event_type_id for i in items if i.event_type_id}) or [""]
    keys = sorted({i.event_type for i in items if i.event_type}) or [""]
    by_id: dict[str, _TypeInfo] = {}
    by_key: dict[str, _TypeInfo] = {}
    if ids == [""] and keys == [""]:
        return by_id, by_key
    sql = _TYPES_SQL.format(ids=", ".join(["%s"] * len(ids)), keys=", ".join(["%s"] * len(keys)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*ids, *keys])
        rows = cursor.fetchall()
    for type_id, key, property_id, value_type, required in rows:
        info = by_id.get(type_id)
        if info is None:
            info = by_id[type_id] = by_key[key] = _TypeInfo(type_id, key, {})
        if property_id is not None:
            info.definitions[property_id] = _Definition(property_id, value_type, bool(required))
    return by_id, by_key


def _decode_data(value: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        decoded = json.loads(value) if value.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc.msg}") from None
    if not isinstance(decoded, dict):
        raise ValueError("must be a JSON object")
    return decoded


def _check_records(
    info: _TypeInfo, records: list[Any], errors: dict[str, list[str]]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, record in enumerate(records):
        path = f"property_records[{position}]"
        definition = info.definitions.get(record.property_id)
        if definition is None:
            errors.setdefault(f"{path}.property_id", []).append(
                f"Unknown property '{record.property_id}' for event type '{info.key}'."
            )
            continue
        if record.property_id in seen:
            errors.setdefault(f"{path}.property_id", []).append(
                f"Property '{record.property_id}' is given more than once."
            )
            continue
        seen.add(record.property_id)
        try:
            text = PROPERTY_TYPES[definition.value_type].to_text(record.property_value)
        except ValueError as exc:
            errors.setdefault(f"{path}.property_value", []).append(
                f"Property '{record.property_id}' {exc}."
            )
            continue
        out.append((record.property_id, text))
    for definition in info.definitions.values():
        if definition.required and definition.property_id not in seen:
            errors.setdefault("property_records", []).append(
                f"Required property '{definition.property_id}' is missing."
            )
    return out


def _known_customers(ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return set(Customer.objects.filter(id__in=ids).values_list("id", flat=True))


def events_prepare(
    *, items: list[EventCreateIn], received_at: datetime | None = None
) -> tuple[list[PreparedEvent], list[InvalidEvent]]:
    """Judge each item on its own: resolve type and customer, validate properties, refs.

    Returns the events ready to insert and the invalid ones with their reasons.
    Unknown customer external ids are created here (an integration does not
    have to create customers first). A ref repeated inside `items` makes every
    repeat after the first invalid; refs already stored are found by `events_store`.
    """
    received_at = received_at or timezone.now()
    events_in = [item.event for item in items]
    by_id, by_key = _load_types(events_in)
    known_customers = _known_customers({e.customer_id for e in events_in if e.customer_id})

    prepared: list[PreparedEvent] = []
    invalid: list[InvalidEvent] = []
    pending_external: list[tuple[PreparedEvent, str]] = []
    for index, item in enumerate(items):
        event_in = item.event
        errors: dict[str, list[str]] = {}
        info: _TypeInfo | None = None
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
        mapping = customers_ensure(external_ids={ext for _, ext in pending_external})
        for ready, ext in pending_external:
            ready.customer_id = mapping[ext]

    prepared, repeats = _split_repeated_refs(prepared)
    invalid.extend(repeats)
    invalid.sort(key=lambda i: i.index)
    return prepared, invalid


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


def _existing_refs(events: list[PreparedEvent]) -> dict[tuple[str, str], str]:
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


def events_store(*, prepared: list[PreparedEvent]) -> StoreResult:
    """Insert prepared events and their property records in one transaction.

    Refs are unique per event type forever. An event whose ref is already stored
    (also by a concurrent request that committed first) is not stored and comes
    back in `duplicates` with the stored event's id; nothing raises, so a batch is
    never half written. A database failure raises and stores none of the batch.
    """
    if not prepared:
        return StoreResult([], [])
    with transaction.atomic():
        if connection.vendor == "postgresql":
            stored_ids = pg_insert_events(prepared)
        else:
            stored_ids = _orm_insert_events(prepared)
        # Webhook deliveries in the same transaction as their events (issue 4).
        deliveries_create_for_events(events=[p for p in prepared if p.id in stored_ids])
        # Workflows (issue 6): flag the events to evaluate; enqueued after commit.
        events_mark_automation(events=[p for p in prepared if p.id in stored_ids])
    if len(stored_ids) == len(prepared):
        return StoreResult(prepared, [])
    stored = [p for p in prepared if p.id in stored_ids]
    skipped = [p for p in prepared if p.id not in stored_ids]
    existing = _existing_refs(skipped)
    duplicates = [
        _ref_exists(p.index, existing.get((p.event_type_id, p.external_id or ""))) for p in skipped
    ]
    return StoreResult(stored, duplicates)


def _orm_insert_events(prepared: list[PreparedEvent]) -> set[str]:
    """The portable path (SQLite): skip stored refs, then bulk_create."""
    with_ref = [p for p in prepared if p.external_id is not None]
    existing = _existing_refs(with_ref) if with_ref else {}
    fresh = [p for p in prepared if (p.event_type_id, p.external_id) not in existing]
    Event.objects.bulk_create(
        [
            Event(
                id=p.id,
                event_type_id=p.event_type_id,
                customer_id=p.customer_id,
                external_id=p.external_id,
                secondary_external_id=p.secondary_external_id,
                data=p.data,
                occurred_at=p.occurred_at,
                created_at=p.created_at,
            )
            for p in fresh
        ]
    )
    PropertyRecord.objects.bulk_create(
        [
            PropertyRecord(event_id=p.id, property_id=pid, property_value=value)
            for p in fresh
            for pid, value in p.records
        ]
    )
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
    prepared, invalid = events_prepare(items=items)
    result = events_store(prepared=prepared)
    if result.duplicates:
        invalid = sorted([*invalid, *result.duplicates], key=lambda i: i.index)
    return BatchResult(result.stored, invalid)


def event_ingest(*, item: EventCreateIn) -> str:
    """Store one event and return its id. Invalid input is a 400; a ref that exists is a 409."""
    prepared, invalid = events_prepare(items=[item])
    if not invalid:
        result = events_store(prepared=prepared)
        if result.stored:
            return result.stored[0].id
        invalid = result.duplicates
    problem = invalid[0]
    if problem.error == REF_EXISTS:
        raise ConflictError(REF_EXISTS, extra={"event_id": problem.event_id})
    raise ValidationFailed(problem.error, details=problem.details)


# ---------------------------------------------------------------- processing status


def event_mark_processed(*, event_id: str, status: str) -> None:
    """Mark a pending event completed or failed, once.

    One conditional UPDATE decides: of any number of concurrent calls exactly one
    matches `state = pending` (PostgreSQL re-checks the WHERE after waiting for
    the row lock), the others change nothing and get a 409. No read-modify-write.
    """
    now = timezone.now()
    if status == Event.State.COMPLETED.label:
        changes = {"state": Event.State.COMPLETED, "completed_at": now, "failed_at": None}
    elif status == Event.State.FAILED.label:
        changes = {"state": Event.State.FAILED, "failed_at": now, "completed_at": None}
    else:
        raise ValidationFailed(
            f"status must be 'completed' or 'failed', got '{status}'.",
            details={"status": ["Must be 'completed' or 'failed'."]},
        )
    updated = Event.objects.filter(pk=event_id, state=Event.State.PENDING).update(**changes)
    if updated:
        return
    # Only to choose the error: the UPDATE above already decided nothing changes.
    if Event.objects.filter(pk=event_id).exists():
        raise ConflictError("Event already processed")
    raise NotFoundError(f"Event '{event_id}' not found.")
