"""Reads for events and event types."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, connections
from django.db.models import Q, QuerySet, Sum
from django.db.models.expressions import Col
from django.db.models.lookups import Exact

from customers.models import Customer
from customers.selectors import customer_ids_matching
from events_app.models import Event, EventCount, EventType, PropertyRecord
from events_app.partitions.months import id_created_window
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


def event_search(*, queryset: QuerySet[Event], term: str) -> QuerySet[Event]:
    """What a marketer means by `term` in the events list: the event with that id, events
    whose ref starts with it, events of customers whose external id or email starts with
    it, and events of types whose key or name starts with it -- in any case.

    Every arm is an index range on PostgreSQL (the primary key, event_external_upper_idx,
    and through the customer and type ids resolved first, event_customer_idx and
    event_type_created_idx), so the planner can combine them instead of scanning.
    """
    condition = Q(pk=term) | Q(external_id__istartswith=term)
    customer_ids = customer_ids_matching(term=term)
    if customer_ids:
        condition |= Q(customer_id__in=customer_ids)
    type_ids = list(
        EventType.objects.filter(Q(key__istartswith=term) | Q(name__istartswith=term))
        .order_by()
        .values_list("pk", flat=True)
    )
    if type_ids:
        condition |= Q(event_type_id__in=type_ids)
    return queryset.filter(condition)


def event_key_properties(
    *, events: Sequence[Event], limit: int
) -> dict[str, list[tuple[str, str]]]:
    """Event id -> its first `limit` property values (by property id), for a page of
    events in one query: the unique (event, property_id) index, and the page's
    created_at range keeps PostgreSQL to the month partitions the page spans."""
    if not events:
        return {}
    found: dict[str, list[tuple[str, str]]] = {}
    rows = (
        PropertyRecord.objects.filter(
            event_id__in=[event.pk for event in events],
            created_at__gte=min(event.created_at for event in events),
            created_at__lte=max(event.created_at for event in events),
        )
        .order_by("event_id", "property_id")
        .values_list("event_id", "property_id", "property_value")
    )
    for event_id, property_id, value in rows:
        shown = found.setdefault(event_id, [])
        if len(shown) < limit:
            shown.append((property_id, value))
    return found


def event_list() -> QuerySet[Event]:
    return Event.objects.all()


def customer_events(*, customer: Customer) -> QuerySet[Event]:
    """The customer's events; served by the (customer, created_at, id) index."""
    return Event.objects.filter(customer=customer)


def _counter_scope(queryset: QuerySet[Event]) -> tuple[bool, str | None]:
    """(answerable, event_type_id): can the event counters count this queryset?

    Only for the whole table or exactly `event_type_id = X` — read from the
    queryset's own WHERE clause, so a filter added anywhere (customer, status,
    time range, a caller's pre-filtered queryset) falls back to COUNT(*)
    instead of returning a wrong total.
    """
    query = queryset.query
    if query.is_sliced or query.distinct or query.combinator:
        return False, None
    where = query.where
    if not where.children:
        return True, None
    if where.negated or len(where.children) != 1:
        return False, None
    lookup = where.children[0]
    if (
        isinstance(lookup, Exact)
        and isinstance(lookup.lhs, Col)
        and lookup.lhs.target == Event._meta.get_field("event_type")
        and isinstance(lookup.rhs, str)
    ):
        return True, lookup.rhs
    return False, None


def event_count(*, queryset: QuerySet[Event]) -> int:
    """The exact number of events in `queryset`, cheaply when possible.

    On PostgreSQL, all events and the events of one type are counted by
    summing the trigger-maintained EventCount slots (a few rows) instead of
    COUNT(*) over up to millions of rows. Any other filter, and
    SQLite (no triggers), use COUNT(*).
    """
    answerable, event_type_id = _counter_scope(queryset)
    if not answerable or connections[queryset.db].vendor != "postgresql":
        return queryset.count()
    counters = EventCount.objects.using(queryset.db)
    if event_type_id is not None:
        counters = counters.filter(event_type_id=event_type_id)
    return int(counters.aggregate(total=Sum("events"))["total"] or 0)


def events_ingested_total() -> int:
    """Every event ever stored, deleted ones included: never goes down (EventCount.ingested,
    kept by the insert triggers on both databases)."""
    return int(EventCount.objects.aggregate(total=Sum("ingested"))["total"] or 0)


def event_get(*, event_id: str) -> Event:
    """The event with this id; on PostgreSQL looked up first in the month partitions
    around the time its id carries (events_app.partitions), then everywhere."""
    events = Event.objects.all()
    window = id_created_window(event_id) if connection.vendor == "postgresql" else None
    if window is not None:
        found = events.filter(pk=event_id, created_at__gte=window[0], created_at__lt=window[1])
        for event in found[:1]:
            return event
    try:
        return events.get(pk=event_id)
    except Event.DoesNotExist:
        raise NotFoundError(f"Event '{event_id}' not found.") from None


def event_property_records(*, event: Event) -> QuerySet[PropertyRecord]:
    """The event's records; created_at (the records' partition key, the event's own)
    keeps PostgreSQL in the event's month partition."""
    return PropertyRecord.objects.filter(event=event, created_at=event.created_at)


def event_type_list() -> QuerySet[EventType]:
    return EventType.objects.prefetch_related("properties")


def event_type_get(*, event_type_id: str) -> EventType:
    try:
        return EventType.objects.prefetch_related("properties").get(pk=event_type_id)
    except EventType.DoesNotExist:
        raise NotFoundError(f"Event type '{event_type_id}' not found.") from None
