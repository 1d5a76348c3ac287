"""A customer's events on their timeline (customers.timeline), with key property values.

Registered in EventsAppConfig.ready(). Read through event_customer_idx
(customer, created_at, id): one index range per page, however many events the
customer has.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.urls import reverse

from customers.timeline import TimelineCursor, TimelineEntry
from events_app.models import Event
from events_app.selectors import event_key_properties

EVENT_SOURCE = "event"
# Property values shown on an entry; the event's page has them all.
KEY_FACTS = 4


def _title(event: Event) -> str:
    ref = f" · ref {event.external_id}" if event.external_id else ""
    return f"{event.event_type.key}{ref}"


def customer_event_entries(
    customer_id: str, after: TimelineCursor | None, limit: int
) -> Sequence[TimelineEntry]:
    """The customer's events after `after`, newest first (by when Herald stored them)."""
    queryset = Event.objects.filter(customer_id=customer_id)
    if after is not None:
        queryset = queryset.filter(
            after.before(source=EVENT_SOURCE, at_field="created_at", key_field="id")
        )
    events = list(queryset.select_related("event_type").order_by("-created_at", "-id")[:limit])
    facts = event_key_properties(events=events, limit=KEY_FACTS)
    return [
        TimelineEntry(
            at=event.created_at,
            source=EVENT_SOURCE,
            key=event.pk,
            kind="event",
            title=_title(event),
            url=reverse("admin:events_app_event_change", args=[event.pk]),
            # "pending" is every event the integration has not marked: not news.
            status="" if event.state == Event.State.PENDING else event.status,
            facts=facts.get(event.pk, []),
        )
        for event in events
    ]
