"""A row holding an instant Python cannot represent (stored before datetimes were
validated, or by hand) is read with that instant pinned to the edge of the calendar:
lists, the event, the customer's events and the admin keep working."""

from __future__ import annotations

import pytest
from django.db import connection

from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

# What PostgreSQL stores for "0001-01-01T00:00:00+01:00" (0001-12-31 23:00 BC in UTC)
# and for "9999-12-31T23:59:59-01:00" (10000-01-01 00:59:59 UTC), and infinity.
POISON = {
    "before": ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z"),
    "after": ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999Z"),
    "infinity": ("infinity", "9999-12-31T23:59:59.999999Z"),
    "-infinity": ("-infinity", "0001-01-01T00:00:00Z"),
}


def poison(event: Event, stored: str) -> None:
    """Write `stored` into the event's occurred_at directly, as a row from before."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_app_event SET occurred_at = %s::timestamptz WHERE id = %s",
            [stored, event.pk],
        )


@pytest.fixture(params=sorted(POISON))
def poisoned(request):
    customer = CustomerFactory()
    kind = EventTypeFactory(key="visit")
    healthy = EventFactory(event_type=kind, customer=customer, external_id="healthy")
    bad = EventFactory(event_type=kind, customer=customer, external_id="bad")
    stored, shown = POISON[request.param]
    poison(bad, stored)
    return healthy, bad, shown


def test_event_lists_show_the_row_with_its_instant_at_the_edge(api, poisoned):
    healthy, bad, shown = poisoned

    listed = api.get(f"{API}/events")
    by_customer = api.get(f"{API}/customers/{bad.customer_id}/events")
    sorted_by_it = api.get(f"{API}/events", {"sort_field": "occurred_at"})

    for response in (listed, by_customer, sorted_by_it):
        assert response.status_code == 200, response.content
        rows = {e["event_id"]: e["occurred_at"] for e in response.json()["data"]["events"]}
        assert rows[bad.pk] == shown
        assert healthy.pk in rows


def test_the_event_reads_with_its_instant_at_the_edge(api, poisoned):
    _, bad, shown = poisoned

    response = api.get(f"{API}/events/{bad.pk}")

    assert response.status_code == 200
    assert response.json()["data"]["occurred_at"] == shown


def test_the_admin_lists_and_shows_the_row(admin_client, poisoned):
    healthy, bad, _ = poisoned

    listed = admin_client.get("/admin/events_app/event/")
    page = admin_client.get(f"/admin/events_app/event/{bad.pk}/change/")

    assert listed.status_code == 200
    assert bad.pk in listed.content.decode()
    assert healthy.pk in listed.content.decode()
    assert page.status_code == 200
    assert b"bad" in page.content
