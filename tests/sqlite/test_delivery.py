"""Webhook deliveries through the one sender: the claim and the record (two statements
in a transaction on SQLite, one on PostgreSQL), retries and the dispatcher."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from automation.due import due_events_process
from automation.webhooks.models import Delivery
from project.background import run_job
from tests.receiver import Receiver, Reply
from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def subscribe(api: APIClient, receiver: Receiver, *types: str) -> dict[str, Any]:
    body = {"webhook": {"url": receiver.url("/hook"), "event_types": list(types)}}
    return ok(post(api, "/webhooks", body), 201)


def test_new_event_is_delivered_signed_and_marked_delivered(api, purchase, receiver, after_commit):
    webhook = subscribe(api, receiver, "purchase")

    with after_commit():
        event_id = ok(post(api, "/events", purchase_item("alice", ref="o-1")), 201)["event_id"]

    [request] = receiver.wait_for(1)
    event = ok(get(api, f"/events/{event_id}"))
    payload = Webhook(webhook["secret"]).verify(request.body, request.headers)
    assert payload["event_id"] == event_id
    assert event["is_delivered"] is True
    deliveries = ok(get(api, "/deliveries", {"event_id": event_id}))
    assert deliveries["total_items"] == 1
    [delivery] = deliveries["deliveries"]
    assert (delivery["status"], delivery["attempt_count"], delivery["last_status_code"]) == (
        "succeeded",
        1,
        200,
    )
    detail = ok(get(api, f"/deliveries/{delivery['delivery_id']}"))
    assert [a["status_code"] for a in detail["attempts"]] == [200]


def test_failed_attempt_is_retried_by_the_dispatcher_with_the_same_message_id(
    api, purchase, receiver, after_commit
):
    receiver.reply(Reply(status=503), Reply(status=200))
    subscribe(api, receiver, "purchase")
    with time_machine.travel(T0, tick=False) as clock:
        with after_commit():
            event_id = ok(post(api, "/events", purchase_item("alice")), 201)["event_id"]
        first = Delivery.objects.get(event_id=event_id)
        outstanding = ok(get(api, "/events", {"is_delivered": "false"}))
        assert (first.status, first.attempt_count, first.last_status_code) == ("pending", 1, 503)
        assert [e["event_id"] for e in outstanding["events"]] == [event_id]

        # Not due yet: the dispatcher hands nothing on.
        assert run_job("deliveries.dispatch") == 0
        clock.move_to(first.next_attempt_at)
        assert run_job("deliveries.dispatch") == 1

    second, retried = receiver.wait_for(2)
    delivery = Delivery.objects.get(event_id=event_id)
    assert second.headers["webhook-id"] == retried.headers["webhook-id"] == delivery.message_id
    assert (delivery.status, delivery.attempt_count, delivery.last_status_code) == (
        "succeeded",
        2,
        200,
    )
    assert list(delivery.attempts.order_by("number").values_list("outcome", flat=True)) == [
        "retry",
        "succeeded",
    ]
    assert ok(get(api, "/events", {"is_delivered": "false"}))["total_items"] == 0


def test_dispatcher_sends_each_due_delivery_of_a_batch_once(api, purchase, receiver):
    subscribe(api, receiver, "purchase")
    # Stored without running what the request hands on after commit: as if the broker
    # had lost the messages; the periodic claim makes the rows, the dispatcher finds them.
    data = ok(post(api, "/events/batch", {"events": [purchase_item(f"c{n}") for n in range(4)]}))
    ids = {v["event_id"] for v in data["valid_events"]}
    assert Delivery.objects.count() == 0
    assert due_events_process().claimed == 4  # its send tasks wait for a commit: lost too
    assert Delivery.objects.filter(status="pending").count() == 4

    with time_machine.travel(datetime.now(tz=UTC) + timedelta(minutes=5)):
        run_job("deliveries.dispatch")

    requests = receiver.wait_for(4)
    assert {json.loads(r.body)["event_id"] for r in requests} == ids
    assert len({r.headers["webhook-id"] for r in requests}) == 4
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("succeeded", 1)}


def test_event_of_an_unsubscribed_type_gets_no_delivery(api, purchase, receiver, after_commit):
    ok(post(api, "/event-types", {"event_type": {"key": "login", "name": "Login"}}), 201)
    subscribe(api, receiver, "login")

    with after_commit():
        event_id = ok(post(api, "/events", purchase_item("alice")), 201)["event_id"]

    assert Delivery.objects.count() == 0
    assert receiver.requests == []
    assert ok(get(api, f"/events/{event_id}"))["is_delivered"] is True


def test_redeliver_sends_a_succeeded_delivery_again(api, purchase, receiver, after_commit):
    subscribe(api, receiver, "purchase")
    with after_commit():
        ok(post(api, "/events", purchase_item("alice")), 201)
    delivery = Delivery.objects.get()

    with after_commit():
        ok(post(api, f"/deliveries/{delivery.pk}/redeliver", {}), 202)

    first, again = receiver.wait_for(2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
