"""GET /events pages (deferred join): total order over tied sort values, no repeats or gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tied_events() -> list[Event]:
    """23 events: most share one created_at; refs tie across types or are missing."""
    purchase, login = EventTypeFactory(key="purchase"), EventTypeFactory(key="login")
    customer = CustomerFactory()
    events = []
    for n in range(23):
        event_type = purchase if n % 2 else login
        # The same ref under both types, and every fifth event without a ref.
        ref = None if n % 5 == 0 else f"ref{n // 2:02d}"
        created = MOMENT if n % 7 else MOMENT + timedelta(seconds=n)
        events.append(
            EventFactory(
                event_type=event_type, customer=customer, external_id=ref, created_at=created
            )
        )
    return events


def walk(api: APIClient, page_size: int, **params: str) -> tuple[list[str], set[int]]:
    seen: list[str] = []
    totals: set[int] = set()
    offset = 0
    while True:
        response = api.get(f"{API}/events", {"count": page_size, "offset": offset, **params})
        assert response.status_code == 200, response.json()
        data = response.json()["data"]
        totals.add(data["total_items"])
        if not data["events"]:
            return seen, totals
        seen.extend(event["event_id"] for event in data["events"])
        offset += page_size


def expected_order(events: list[Event], sort_field: str, descending: bool) -> list[str]:
    def key(event: Event) -> tuple:
        if sort_field == "created_at":
            return (event.created_at, event.id)
        # PostgreSQL sorts NULL after every value ascending (so first descending).
        return (event.external_id is None, event.external_id or "", event.id)

    return [e.id for e in sorted(events, key=key, reverse=descending)]


@pytest.mark.parametrize("sort_field", ["created_at", "external_id"])
@pytest.mark.parametrize("direction", ["DESC", "ASC"])
@pytest.mark.parametrize("by_type", [False, True])
def test_pages_over_tied_values_never_repeat_or_skip(
    api: APIClient, tied_events: list[Event], sort_field: str, direction: str, by_type: bool
) -> None:
    wanted = tied_events
    params = {"sort_field": sort_field, "sort_direction": direction}
    if by_type:
        type_id = tied_events[1].event_type_id
        wanted = [e for e in tied_events if e.event_type_id == type_id]
        params["event_type_id"] = type_id

    seen, totals = walk(api, 4, **params)

    assert seen == expected_order(wanted, sort_field, direction == "DESC")
    assert len(set(seen)) == len(seen)
    assert totals == {len(wanted)}


def test_page_past_the_end_is_empty_with_the_exact_total(
    api: APIClient, tied_events: list[Event]
) -> None:
    response = api.get(f"{API}/events", {"count": 10, "offset": 1000})

    assert response.status_code == 200
    assert response.json()["data"] == {"events": [], "total_items": 23}


def test_page_rows_keep_their_serialized_shape(api: APIClient, tied_events: list[Event]) -> None:
    newest = max(tied_events, key=lambda e: (e.created_at, e.id))

    data = api.get(f"{API}/events", {"count": 1}).json()["data"]

    assert data["total_items"] == 23
    assert data["events"] == [
        {
            "event_id": newest.id,
            "event_type_id": newest.event_type_id,
            "customer_id": newest.customer_id,
            "external_id": newest.external_id,
            "secondary_external_id": None,
            "data": {"test": 10},
            "occurred_at": newest.occurred_at.isoformat().replace("+00:00", "Z"),
            "created_at": newest.created_at.isoformat().replace("+00:00", "Z"),
            "state": 1,
            "status": "pending",
            "completed_at": None,
            "failed_at": None,
            "is_delivered": True,
        }
    ]
