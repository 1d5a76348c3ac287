"""Lists and totals: event counters (trigger-maintained on PostgreSQL, COUNT(*) on
SQLite), filters and sorting, the admin's row estimate, and the API-key read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from events_app.models import ApiClient
from tests.sqlite.conftest import get, ok, patch, post, purchase_item

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def events(api: APIClient, path: str = "/events", **params: Any) -> tuple[list[str], int]:
    """The external ids of a page of events, and the list's total."""
    data = ok(get(api, path, params))
    return [e["external_id"] for e in data["events"]], data["total_items"]


@pytest.fixture
def stored(api: APIClient, purchase: str) -> dict[str, str]:
    """Five purchases (alice 3, bob 2) and two logins (alice), occurring an hour apart."""
    ok(post(api, "/event-types", {"event_type": {"key": "login", "name": "Login"}}), 201)
    items = [
        purchase_item("alice", ref="p1", occurred_at=iso(T0)),
        purchase_item("bob", ref="p2", occurred_at=iso(T0 + timedelta(hours=1))),
        purchase_item("alice", ref="p3", occurred_at=iso(T0 + timedelta(hours=2))),
        purchase_item("bob", ref="p4", occurred_at=iso(T0 + timedelta(hours=3))),
        purchase_item("alice", ref="p5", occurred_at=iso(T0 + timedelta(hours=4))),
        {"event": {"event_type": "login", "customer_external_id": "alice", "external_id": "l1"}},
        {"event": {"event_type": "login", "customer_external_id": "alice", "external_id": "l2"}},
    ]
    data = ok(post(api, "/events/batch", {"events": items}))
    assert data["invalid_events"] == []
    ids = {v["external_id"]: v["event_id"] for v in data["valid_events"]}
    ids["alice"] = data["valid_events"][0]["customer_id"]
    ids["bob"] = data["valid_events"][1]["customer_id"]
    ids["purchase"] = purchase
    ids["login"] = data["valid_events"][5]["event_type_id"]
    return ids


def test_totals_of_all_events_and_of_one_type(api, stored):
    assert events(api, count=2)[1] == 7
    assert events(api, event_type_id=stored["purchase"], sort_field="occurred_at", count=1) == (
        ["p5"],
        5,
    )
    assert events(api, event_type_id=stored["login"])[1] == 2


def test_totals_with_other_filters_count_only_matching_events(api, stored):
    by_bob = {"event_type_id": stored["purchase"], "customer_id": stored["bob"]}
    assert events(api, sort_field="occurred_at", **by_bob) == (
        ["p4", "p2"],
        2,
    )
    assert events(api, customer_id=stored["alice"], sort_field="external_id") == (
        ["p5", "p3", "p1", "l2", "l1"],
        5,
    )
    window = {
        "occurred_after": iso(T0 + timedelta(hours=1)),
        "occurred_before": iso(T0 + timedelta(hours=3)),
    }
    assert events(api, sort_field="occurred_at", sort_direction="ASC", **window) == (
        ["p2", "p3"],
        2,
    )
    assert events(api, external_id="p3")[1] == 1
    assert events(api, event_type_id="0" * 26) == ([], 0)


def test_customer_events_list_pages_with_the_same_total(api, stored):
    path = f"/customers/{stored['alice']}/events"
    first = events(api, path, sort_field="external_id", sort_direction="asc", count=2)
    second = events(api, path, sort_field="external_id", sort_direction="asc", count=2, offset=2)

    assert first == (["l1", "l2"], 5)
    assert second == (["p1", "p3"], 5)


def test_status_filter_and_total_follow_processing(api, stored):
    ok(patch(api, f"/events/{stored['p1']}", {"status": "completed"}))
    ok(patch(api, f"/events/{stored['p2']}", {"status": "failed"}))

    assert events(api, status="pending")[1] == 5
    assert events(api, status="completed") == (["p1"], 1)
    assert events(api, status="failed", event_type_id=stored["purchase"]) == (["p2"], 1)
    assert events(api, event_type_id=stored["purchase"])[1] == 5


def test_totals_drop_when_a_customer_is_deleted(api, stored):
    ok(api.delete(f"/rest-api/enterprise-interface/v1.0/customers/{stored['bob']}"))

    assert events(api)[1] == 5
    assert events(api, event_type_id=stored["purchase"], sort_field="occurred_at") == (
        ["p5", "p3", "p1"],
        3,
    )
    assert events(api, event_type_id=stored["login"])[1] == 2


def test_admin_event_list_and_dashboard_count_every_event(stored):
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-123456")
    client = Client()
    client.force_login(staff)

    changelist = client.get("/admin/events_app/event/")
    dashboard = client.get("/admin/")

    assert changelist.status_code == 200
    assert "7 events" in changelist.text
    assert dashboard.status_code == 200
    assert '<span class="value" id="figure-events-total">7</span>' in dashboard.text


def test_api_key_read_from_the_database_on_every_request_has_an_aware_last_use(api, settings):
    settings.API_KEY_CACHE_SECONDS = 0

    first = get(api, "/events")
    second = get(api, "/events")

    assert (first.status_code, second.status_code) == (200, 200)
    [last_used_at] = ApiClient.objects.values_list("last_used_at", flat=True)
    assert last_used_at is not None
    assert last_used_at.tzinfo is not None
