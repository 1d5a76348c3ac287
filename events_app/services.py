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
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from automation.delivery import deliveries_create_for_events
from automation.workflow_runs import events_mark_automation
from customers.models import Customer
from customers.services import customers_ensure
from events_app.models import ApiClient, Event, EventType, PropertyDefinition, PropertyRecord
from events_app.properties import PROPERTY_TYPES
from events_app.schemas import EventCreateIn, EventIn
from project.errors import ConflictError, ValidationFailed

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


@dataclass
class PreparedEvent:
    """An event that passed every check, ready to insert."""

    index: int
    event: Event
    records: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InvalidEvent:
    index: int
    error: str
    details: dict[str, list[str]]
    event_id: str | None = None  # the existing event, for duplicate refs


@dataclass
class _TypeInfo:
    event_type: EventType
    definitions: dict[str, PropertyDefinition]


def _load_types(items: list[EventIn]) -> tuple[dict[str, _TypeInfo], dict[str, _TypeInfo]]:
    ids = {i.event_type_id for i in items if i.event_type_id}
    keys = {i.event_type for i in items if i.event_type}
    by_id: dict[str, _TypeInfo] = {}
    by_key: dict[str, _TypeInfo] = {}
    if not ids and not keys:
        return by_id, by_key
    types = EventType.objects.filter(Q(id__in=ids) | Q(key__in=keys)).prefetch_related("properties")
    for event_type in types:
        info = _TypeInfo(event_type, {p.property_id: p for p in event_type.properties.all()})
        by_id[event_type.id] = info
        by_key[event_type.key] = info
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
                f"Unknown property '{record.property_id}' for event type '{info.event_type.key}'."
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


def events_prepare(
    *, items: list[EventCreateIn], received_at: datetime | None = None
) -> tuple[list[PreparedEvent], list[InvalidEvent]]:
    """Judge each item on its own: resolve type and customer, validate properties, refs.

    Returns the events ready to insert and the invalid ones with their reasons.
    Unknown customer external ids are created here (an integration does not
    have to create customers first).
    """
    received_at = received_at or timezone.now()
    events_in = [item.event for item in items]
    by_id, by_key = _load_types(events_in)
    customer_ids = {e.customer_id for e in events_in if e.customer_id}
    known_customers = set(Customer.objects.filter(id__in=customer_ids).values_list("id", flat=True))

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
        event = Event(
            event_type=info.event_type,
            customer_id=event_in.customer_id,
            external_id=event_in.external_id,
            secondary_external_id=event_in.secondary_external_id,
            data=data,
            occurred_at=occurred_at,
            created_at=received_at,
        )
        ready = PreparedEvent(index=index, event=event, records=records)
        prepared.append(ready)
        if event_in.customer_external_id:
            pending_external.append((ready, event_in.customer_external_id))

    if pending_external:
        mapping = customers_ensure(external_ids={ext for _, ext in pending_external})
        for ready, ext in pending_external:
            ready.event.customer_id = mapping[ext]

    prepared, duplicates = _split_duplicate_refs(prepared)
    invalid.extend(duplicates)
    invalid.sort(key=lambda i: i.index)
    return prepared, invalid


def _split_duplicate_refs(
    prepared: list[PreparedEvent],
) -> tuple[list[PreparedEvent], list[InvalidEvent]]:
    """Refs are unique per event type forever; in-batch repeats lose to the first."""
    with_ref = [p for p in prepared if p.event.external_id]
    if not with_ref:
        return prepared, []
    query = Q()
    for type_id in {p.event.event_type_id for p in with_ref}:
        refs = {p.event.external_id for p in with_ref if p.event.event_type_id == type_id}
        query |= Q(event_type_id=type_id, external_id__in=refs)
    existing = {
        (type_id, ref): event_id
        for event_id, type_id, ref in Event.objects.filter(query).values_list(
            "id", "event_type_id", "external_id"
        )
    }
    keep: list[PreparedEvent] = []
    duplicates: list[InvalidEvent] = []
    for ready in prepared:
        key = (ready.event.event_type_id, ready.event.external_id)
        if ready.event.external_id and key in existing:
            duplicates.append(
                InvalidEvent(
                    ready.index,
                    REF_EXISTS,
                    {"event.external_id": [REF_EXISTS]},
                    event_id=existing[key],
                )
            )
            continue
        if ready.event.external_id:
            existing[key] = ready.event.id
        keep.append(ready)
    return keep, duplicates


def events_store(*, prepared: list[PreparedEvent]) -> list[Event]:
    """Insert prepared events and their property records in one transaction."""
    with transaction.atomic():
        # Workflows (issue 6): flag events to evaluate; enqueued after commit.
        events_mark_automation(events=[p.event for p in prepared])
        events = Event.objects.bulk_create([p.event for p in prepared])
        PropertyRecord.objects.bulk_create(
            [
                PropertyRecord(event_id=p.event.id, property_id=pid, property_value=value)
                for p in prepared
                for pid, value in p.records
            ]
        )
        # Webhook deliveries in the same transaction as their events (issue 4).
        deliveries_create_for_events(events=events)
    return events


def event_ingest(*, item: EventCreateIn) -> Event:
    """Store one event. Invalid input is a 400; a ref that exists is a 409."""
    prepared, invalid = events_prepare(items=[item])
    if invalid:
        problem = invalid[0]
        if problem.error == REF_EXISTS:
            raise ConflictError(REF_EXISTS, extra={"event_id": problem.event_id})
        raise ValidationFailed(problem.error, details=problem.details)
    try:
        return events_store(prepared=prepared)[0]
    except IntegrityError:
        # A concurrent request stored the same ref between our check and insert.
        event = prepared[0].event
        existing = Event.objects.filter(
            event_type_id=event.event_type_id, external_id=event.external_id
        ).values_list("id", flat=True)
        raise ConflictError(REF_EXISTS, extra={"event_id": existing.first()}) from None
