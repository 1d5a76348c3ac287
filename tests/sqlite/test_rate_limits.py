"""Rate limits in the database store (the embedded default has no Redis), and an attempt
whose endpoint was deleted while it was sent, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.webhooks import outbound
from automation.webhooks.models import Delivery, DeliveryAttempt
from events_app.api.auth import limiter
from tests.conftest import API
from tests.receiver import Receiver
from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db


def test_a_spent_budget_is_429_until_the_next_window(api: APIClient, settings, monkeypatch):
    settings.HERALD_RATE_LIMIT_REDIS_URL = ""
    settings.HERALD_RATE_LIMIT_API = 2
    settings.HERALD_RATE_LIMIT_WINDOW_SECONDS = 60
    monkeypatch.setattr(limiter, "clock", lambda: 1_000_000_000.0)

    answers = [get(api, "/events") for _ in range(3)]
    monkeypatch.setattr(limiter, "clock", lambda: 1_000_000_020.0)
    next_window = get(api, "/events")

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["RateLimit"] == '"api";r=0;t=20'
    assert answers[2]["Retry-After"] == "20"
    assert next_window.status_code == 200
    assert next_window["RateLimit"] == '"api";r=1;t=60'


def test_an_attempt_whose_endpoint_was_deleted_meanwhile_records_nothing(
    api: APIClient, purchase: str, receiver: Receiver, after_commit, monkeypatch
):
    body = {"webhook": {"url": receiver.url(), "event_types": ["purchase"]}}
    hook = ok(post(api, "/webhooks", body), 201)
    send = outbound.post

    def send_then_delete_the_endpoint(*args: Any, **kwargs: Any) -> Any:
        response = send(*args, **kwargs)
        assert api.delete(f"{API}/webhooks/{hook['webhook_id']}").status_code == 200
        return response

    monkeypatch.setattr(outbound, "post", send_then_delete_the_endpoint)
    with after_commit():
        ok(post(api, "/events", purchase_item("alice", ref="o-1")), 201)

    assert len(receiver.requests) == 1
    assert (Delivery.objects.count(), DeliveryAttempt.objects.count()) == (0, 0)
