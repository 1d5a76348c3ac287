"""Rejected batch items: recorded by the batch API in one statement, bounded per API
client, counted by the hour; and the live page's feed that shows them with events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events_app import activity
from events_app.activity import Rejection, rejections_record
from events_app.models import ApiClient, RejectedItem, RejectionHourCount
from tests.admin_support import marketer_client
from tests.conftest import API
from tests.factories import ApiClientFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


def batch(api, events):
    return api.post(f"{API}/events/batch", {"events": events}, format="json")


def test_a_batch_records_its_rejected_items_with_their_errors_and_counts_them(api):
    EventTypeFactory(key="purchase")

    response = batch(
        api,
        [
            {"event": {"event_type": "purchase", "customer_external_id": "c-1"}},
            {"event": {"event_type": "nope", "customer_external_id": "c-1"}},
            {"event": "not an object"},
        ],
    )

    assert response.status_code == 200
    client = ApiClient.objects.get()
    items = list(
        RejectedItem.objects.order_by("position").values_list(
            "api_client_id", "position", "event_type", "error"
        )
    )
    assert items == [
        (client.pk, 1, "nope", "event.event_type: Unknown event type key 'nope'."),
        (client.pk, 2, "", response.json()["data"]["invalid_events"][1]["error"]),
    ]
    assert list(RejectionHourCount.objects.values_list("api_client_id", "items")) == [
        (client.pk, 2)
    ]


def test_a_rejected_item_naming_a_type_with_a_nul_is_recorded_readably(api):
    # PostgreSQL text cannot hold the NUL the item was refused for: the record shows U+FFFD.
    response = batch(api, [{"event": {"event_type": "bad\x00type", "customer_external_id": "c"}}])

    assert response.status_code == 200
    assert len(response.json()["data"]["invalid_events"]) == 1
    assert list(RejectedItem.objects.values_list("event_type", flat=True)) == ["bad\ufffdtype"]


def test_a_batch_without_rejections_records_nothing(api):
    EventTypeFactory(key="purchase")

    batch(api, [{"event": {"event_type": "purchase", "customer_external_id": "c-1"}}])

    assert RejectedItem.objects.count() == 0
    assert RejectionHourCount.objects.count() == 0


def test_recording_is_one_statement_and_keeps_the_last_items_per_client(monkeypatch):
    monkeypatch.setattr(activity, "REJECTIONS_KEPT", 5)
    mine, other = ApiClientFactory(), ApiClientFactory()
    rejections_record(api_client_id=other.pk, rejections=[Rejection(0, "other's")], now=NOW)
    for round_ in range(3):
        with CaptureQueriesContext(connection) as queries:
            rejections_record(
                api_client_id=mine.pk,
                rejections=[Rejection(i, f"round {round_} item {i}") for i in range(3)],
                now=NOW,
            )
        assert len(queries.captured_queries) == 1

    kept = list(
        RejectedItem.objects.filter(api_client=mine).order_by("id").values_list("error", flat=True)
    )
    assert kept == [
        "round 1 item 1",
        "round 1 item 2",
        "round 2 item 0",
        "round 2 item 1",
        "round 2 item 2",
    ]
    assert RejectedItem.objects.filter(api_client=other).count() == 1
    counts = dict(RejectionHourCount.objects.values_list("api_client_id", "items"))
    assert counts == {mine.pk: 9, other.pk: 1}


def test_the_feed_shows_new_events_and_rejections_after_its_cursors_filtered(api):
    EventTypeFactory(key="purchase")
    EventTypeFactory(key="login")
    batch(
        api,
        [
            {"event": {"event_type": "purchase", "customer_external_id": "c-1"}},
            {"event": {"event_type": "login", "customer_external_id": "c-2"}},
            {"event": {"event_type": "purchase", "customer_id": "missing"}},
        ],
    )
    marketer = marketer_client(["events_app.view_event"])

    first = marketer.get("/admin/live/feed/", {"event_type": "purchase"}).json()

    assert [e["event_type"] for e in first["events"]] == ["purchase"]
    assert [r["error"] for r in first["rejections"]] == [
        "event.customer_id: Unknown customer 'missing'."
    ]
    again = marketer.get("/admin/live/feed/", {"event_type": "purchase", **first["cursor"]}).json()
    assert again["events"] == []
    assert again["rejections"] == []
    sender = ApiClient.objects.get()
    assert [e["api_client"] for e in first["events"]] == [sender.name]
    by_sender = marketer.get("/admin/live/feed/", {"api_client": sender.pk}).json()
    assert len(by_sender["events"]) == 2
    assert len(by_sender["rejections"]) == 1
    other_client = ApiClientFactory()
    by_other = marketer.get("/admin/live/feed/", {"api_client": other_client.pk}).json()
    assert by_other["events"] == []
    assert by_other["rejections"] == []


def test_the_live_page_and_feed_need_the_view_event_permission():
    outsider = marketer_client(["customers.view_customer"], username="outsider")

    assert outsider.get("/admin/live/").status_code == 403
    assert outsider.get("/admin/live/feed/").status_code == 403
