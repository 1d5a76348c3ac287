"""A customer's events in a privacy export (customers.privacy): registered as an export
hook in customers.hooks (EventsAppConfig.ready()), since customers never imports
events_app. Deleting them needs no hook: customer_delete's cascade reaches them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from events_app.models import Event
from events_app.payloads import event_payload


def customer_events_export(customer_id: str) -> Iterator[dict[str, Any]]:
    """Every event of the customer as GET /events/{id} shows it, oldest first, each with
    its property records; read in chunks through event_customer_idx (each chunk's
    records prefetched by one query), yielded one at a time."""
    events = (
        Event.objects.filter(customer_id=customer_id)
        .order_by("created_at", "id")
        .prefetch_related("property_records")
    )
    for event in events.iterator(chunk_size=2000):
        yield {
            **event_payload(event),
            "property_records": [
                {"property_id": r.property_id, "property_value": r.property_value}
                for r in event.property_records.all()
            ],
        }
