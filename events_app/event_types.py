"""Writes for event types and their property definitions.

Ingestion reads the definitions fresh for every request (events_app.ingestion),
so a change made here applies to the very next event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models.deletion import ProtectedError

from events_app.models import EventType, PropertyDefinition
from project.audit.services import audit_record, audit_snapshot
from project.cascade import cascade_delete
from project.errors import ConflictError, NotFoundError, ValidationFailed


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


AUDIT_TYPE = "event_type"


def _state(event_type: EventType) -> dict[str, Any]:
    properties = [
        {"property_id": p.property_id, "name": p.name, "type": p.value_type, "required": p.required}
        for p in event_type.properties.order_by("property_id")
    ]
    return audit_snapshot(event_type, extra={"properties": properties})


def event_type_create(
    *, key: str, name: str, description: str = "", properties: list[PropertyDefinitionInput]
) -> EventType:
    """Create an event type with its property definitions; a taken key is a 409."""
    try:
        with transaction.atomic():
            event_type = EventType.objects.create(key=key, name=name, description=description)
            _replace_properties(event_type, properties)
            audit_record(
                action="created",
                obj_type=AUDIT_TYPE,
                obj_id=event_type.pk,
                after=_state(event_type),
            )
    except IntegrityError:
        existing = EventType.objects.filter(key=key).values_list("id", flat=True).first()
        raise ConflictError(
            f"An event type with key '{key}' already exists.", extra={"event_type_id": existing}
        ) from None
    return event_type


def event_type_update(
    *,
    event_type: EventType,
    fields: dict[str, Any],
    properties: list[PropertyDefinitionInput] | None = None,
) -> EventType:
    """Update fields and, when given, replace the property definitions as a whole.

    Definitions left out of `properties` are removed; property records already
    stored under them stay (they are history), new events may no longer use them.
    """
    try:
        with transaction.atomic():
            before = _state(event_type)
            for name, value in fields.items():
                setattr(event_type, name, value)
            # updated_at moves on a properties-only change too: the type changed.
            event_type.save(update_fields=[*fields.keys(), "updated_at"])
            if properties is not None:
                _replace_properties(event_type, properties)
            audit_record(
                action="updated",
                obj_type=AUDIT_TYPE,
                obj_id=event_type.pk,
                before=before,
                after=_state(event_type),
            )
    except IntegrityError:
        key = fields.get("key")
        event_type.refresh_from_db()  # the in-memory copy holds the rejected values
        existing = EventType.objects.filter(key=key).values_list("id", flat=True).first()
        raise ConflictError(
            f"An event type with key '{key}' already exists.", extra={"event_type_id": existing}
        ) from None
    return event_type


def event_type_delete(*, event_type: EventType) -> None:
    """Delete an event type that has no events; one with events is a 409.

    The row lock makes the check and the delete one step: an event insert
    referencing the type takes a KEY SHARE lock on it, which conflicts with
    FOR UPDATE, so no event can slip in between.
    """
    with transaction.atomic():
        locked = EventType.objects.select_for_update().filter(pk=event_type.pk)
        if not locked.exists():
            raise NotFoundError(f"Event type '{event_type.pk}' not found.")
        before = _state(event_type)
        # Events are PROTECT: kept, never deleted by type. The refusal is checked
        # (one EXISTS) before anything is deleted; the rest (property definitions,
        # event counters, workflow and webhook links) goes set-based.
        try:
            cascade_delete(EventType.objects.filter(pk=event_type.pk))
        except ProtectedError:
            raise ConflictError(
                f"Event type '{event_type.pk}' has events and cannot be deleted.",
            ) from None
        audit_record(action="deleted", obj_type=AUDIT_TYPE, obj_id=event_type.pk, before=before)
