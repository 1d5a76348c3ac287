"""The dashboard's trends and the live page's rejected items, on both databases: the
hourly event figures (counters on PostgreSQL, the events themselves on SQLite), and
recording rejected batch items (one statement on PostgreSQL, three on SQLite)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from events_app import activity
from events_app.models import RejectedItem
from project.background import run_job
from tests.conftest import API
from tests.sqlite.conftest import purchase_item

pytestmark = pytest.mark.django_db


def staff_client() -> Client:
    staff = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-123456")
    client = Client()
    client.force_login(staff)
    return client


def test_the_dashboard_counts_ingested_events_and_rejected_items_by_the_hour(
    api, purchase, monkeypatch
):
    monkeypatch.setattr(activity, "REJECTIONS_KEPT", 2)
    for _ in range(2):
        response = api.post(
            f"{API}/events/batch",
            {
                "events": [
                    purchase_item("c-1"),
                    {"event": {"event_type": "nope", "customer_external_id": "c-1"}},
                    {"event": {"event_type": "nope", "customer_external_id": "c-2"}},
                ]
            },
            format="json",
        )
        assert response.status_code == 200
    run_job("events.hour_counts_fold")

    html = staff_client().get("/admin/").text

    events = html.split('id="trend-events"', 1)[1].split("</figcaption>", 1)[0]
    rejected = html.split('id="trend-rejections"', 1)[1].split("</figcaption>", 1)[0]
    assert re.findall(r'data-total="([^"]+)">(\d+)<', events) == [("purchase", "2")]
    assert re.findall(r'data-total="([^"]+)">(\d+)<', rejected) == [("items rejected", "4")]
    assert RejectedItem.objects.count() == 2  # the last REJECTIONS_KEPT of the client
