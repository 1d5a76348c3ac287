"""Reads for events and event types."""

from __future__ import annotations

from django.db.models import QuerySet

from events_app.models import Event, EventType, PropertyRecord
from project.errors import NotFoundError

# API sort_field → model field. Every list ends with the primary key as tie-breaker.
EVENT_SORT_FIELDS = {
    "created_at": "created_at",
    "occurred_at": "occurred_at",
    "external_id": "external_id",
    "event_id": "pk",
}
EVENT_TYPE_SORT_FIELDS = {
    "key": "key",
    "name": "name",
    "created_at": "created_at",
    "event_type_id": "pk",
}
PROPERTY_RECORD_SORT_FIELDS = {"property_id": "property_id"}


def event_list() -> QuerySet[Event]:
    return Event.objects.all()


def event_get(*, event_id: str) -> Event:
    try:
        return Event.objects.get(pk=event_id)
    except Event.DoesNotExist:
        raise NotFoundError(f"Event '{event_id}' not found.") from None


def event_property_records(*, event: Event) -> QuerySet[PropertyRecord]:
    return PropertyRecord.objects.filter(event=event)


def event_type_list() -> QuerySet[EventType]:
    return EventType.objects.prefetch_related("properties")


def event_type_get(*, event_type_id: str) -> EventType:
    try:
        return EventType.objects.prefetch_related("properties").get(pk=event_type_id)
    except EventType.DoesNotExist:
        raise NotFoundError(f"Event type '{event_type_id}' not found.") from None
