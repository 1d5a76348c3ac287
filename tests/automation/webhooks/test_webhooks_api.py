"""/webhooks and /deliveries over HTTP, and PATCH /events/{id} is_delivered."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from automation.due import due_events_process
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one, dispatch_due_deliveries
from automation.webhooks.services import endpoint_create
from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory
from tests.receiver import Reply

pytestmark = pytest.mark.django_db


def create_webhook(api, receiver, **fields):
    body = {"webhook": {"url": receiver.url(), **fields}}
    return api.post(f"{API}/webhooks", body, format="json")


def ingest(api, event_type, ref="r1", *, claim=True):
    """POST one event, then (`claim`) do what the worker its commit wakes does (a `db`
    test never commits): claim it, creating its deliveries (not sent)."""
    customer = CustomerFactory()
    response = api.post(
        f"{API}/events",
        {"event": {"event_type_id": event_type.id, "customer_id": customer.id, "external_id": ref}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    if claim:
        due_events_process()
    return response.json()["data"]["event_id"]


def test_created_webhook_shows_its_secret_once(api, receiver, allow_loopback):
    EventTypeFactory(key="purchase")
    created = create_webhook(api, receiver, description="shop", event_types=["purchase"])

    assert created.status_code == 201, created.json()
    data = created.json()["data"]
    assert data["secret"].startswith("whsec_")
    assert len(Webhook(data["secret"])._whsecret) >= 24
    assert (data["url"], data["description"], data["event_types"], data["active"]) == (
        receiver.url(),
        "shop",
        ["purchase"],
        True,
    )
    fetched = api.get(f"{API}/webhooks/{data['webhook_id']}").json()["data"]
    assert "secret" not in fetched
    listed = api.get(f"{API}/webhooks").json()["data"]
    assert listed["total_items"] == 1
    assert "secret" not in listed["webhooks"][0]


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"url": "http://127.0.0.1:8301/"}, "URL not allowed"),
        ({"url": "http://10.0.0.1/"}, "URL not allowed"),
        ({"url": "ftp://example.com/"}, "URL not allowed"),
        ({"url": "http://a:b@example.com/"}, "URL not allowed"),
        ({"url": ""}, "Invalid input: webhook.url"),
        ({"description": "no url"}, "Object missing required field `url`"),
        ({"url": "https://93.184.215.14/", "event_types": ["nope"]}, "Unknown event type(s)"),
        ({"url": "https://example.com/", "colour": "red"}, "Object contains unknown field"),
    ],
)
def test_invalid_webhooks_are_400_and_nothing_is_stored(api, webhook, message, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    response = api.post(f"{API}/webhooks", {"webhook": webhook}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["statusCode"]) == ("Bad Request", 400)
    assert message in body["message"]
    assert Endpoint.objects.count() == 0


def test_webhook_update_rotate_and_delete(api, receiver, allow_loopback):
    EventTypeFactory(key="purchase")
    data = create_webhook(api, receiver).json()["data"]
    url = f"{API}/webhooks/{data['webhook_id']}"

    patched = api.patch(
        url, {"webhook": {"event_types": ["purchase"], "active": False}}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["data"]["event_types"], patched.json()["data"]["active"]) == (
        ["purchase"],
        False,
    )
    assert patched.json()["data"]["disabled_reason"] == "Disabled by a user."
    rotated = api.post(f"{url}/rotate-secret").json()["data"]
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != data["secret"]
    endpoint = Endpoint.objects.get()
    assert (endpoint.secret, endpoint.previous_secret) == (rotated["secret"], data["secret"])

    deleted = api.delete(url)
    assert deleted.status_code == 200
    assert api.get(url).status_code == 404
    assert Endpoint.objects.count() == 0


def test_unknown_webhook_is_404_and_read_key_cannot_write(make_api, api, receiver, allow_loopback):
    assert api.get(f"{API}/webhooks/nope").status_code == 404
    assert api.post(f"{API}/webhooks/nope/test").json()["statusCode"] == 404
    reader = make_api("read")
    response = reader.post(f"{API}/webhooks", {"webhook": {"url": receiver.url()}}, format="json")
    assert response.status_code == 403
    assert Endpoint.objects.count() == 0


def test_schedule_endpoints_do_not_appear_under_webhooks(api, receiver, allow_loopback):
    endpoint, _ = endpoint_create(url=receiver.url(), kind=Endpoint.Kind.SCHEDULE)
    assert api.get(f"{API}/webhooks").json()["data"]["total_items"] == 0
    assert api.get(f"{API}/webhooks/{endpoint.pk}").status_code == 404


def test_ingested_event_is_delivered_to_matching_webhooks_only(
    api, receiver, allow_loopback, django_capture_on_commit_callbacks
):
    purchase = EventTypeFactory(key="purchase")
    EventTypeFactory(key="login")
    create_webhook(api, receiver, event_types=["purchase"])
    create_webhook(api, receiver)  # every type
    create_webhook(api, receiver, event_types=["login"])
    create_webhook(api, receiver, active=False)

    with django_capture_on_commit_callbacks(execute=True):
        event_id = ingest(api, purchase)

    requests = receiver.wait_for(2)
    assert len(requests) == 2
    assert {r.headers["webhook-id"] for r in requests} == set(
        Delivery.objects.values_list("message_id", flat=True)
    )
    body = api.get(f"{API}/events/{event_id}").json()["data"]
    assert body["is_delivered"] is True
    sent = json.loads(requests[0].body)
    assert (sent["event_id"], sent["event_type_id"], sent["is_delivered"]) == (
        event_id,
        purchase.id,
        False,
    )
    assert Delivery.objects.filter(status="succeeded").count() == 2


def test_is_delivered_stays_false_until_every_delivery_succeeded(api, receiver, allow_loopback):
    purchase = EventTypeFactory(key="purchase")
    receiver.reply(Reply(status=500), Reply(status=200))
    create_webhook(api, receiver)
    create_webhook(api, receiver)
    event_id = ingest(api, purchase)
    first, second = Delivery.objects.order_by("pk")

    def listed_undelivered() -> list[str]:
        data = api.get(f"{API}/events", {"is_delivered": "false"}).json()["data"]
        return [e["event_id"] for e in data["events"]]

    assert listed_undelivered() == [event_id]
    deliver_one(first.pk)  # 500: retry scheduled
    deliver_one(second.pk)  # 200
    assert listed_undelivered() == [event_id]
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=first.created_at)
    deliver_one(first.pk)  # 200
    assert listed_undelivered() == []
    assert Event.objects.get(pk=event_id).is_delivered is True


def test_patch_is_delivered_marks_delivered_and_cancels_retries(api, receiver, allow_loopback):
    purchase = EventTypeFactory(key="purchase")
    receiver.reply(Reply(status=503))
    create_webhook(api, receiver)
    event_id = ingest(api, purchase)
    delivery = Delivery.objects.get()
    deliver_one(delivery.pk)

    response = api.patch(f"{API}/events/{event_id}", {"is_delivered": True}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["data"]["is_delivered"] is True
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == ("cancelled", None)
    assert dispatch_due_deliveries() == 0
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
    assert deliver_one(delivery.pk) == "not-due"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"is_delivered": "yes"}, 400, "Invalid input: is_delivered: Expected `bool`"),
        ({"is_delivered": False}, 400, "is_delivered can only be set to true"),
        ({"is_delivered": None}, 400, "Invalid input: is_delivered"),
    ],
)
def test_patch_is_delivered_rejects_malformed_bodies(api, body, status, message):
    event = EventFactory(is_delivered=False)
    response = api.patch(f"{API}/events/{event.id}", body, format="json")
    assert response.status_code == status
    assert message in response.json()["message"]
    event.refresh_from_db()
    assert event.is_delivered is False


def test_patch_is_delivered_unknown_event_is_404_and_read_scope_is_403(api, make_api):
    event = EventFactory(is_delivered=False)
    assert api.patch(f"{API}/events/nope", {"is_delivered": True}, format="json").status_code == 404
    reader = make_api("read")
    response = reader.patch(f"{API}/events/{event.id}", {"is_delivered": True}, format="json")
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.is_delivered is False


def test_delivery_list_filters_detail_and_redeliver(api, receiver, allow_loopback):
    purchase = EventTypeFactory(key="purchase")
    receiver.reply(Reply(status=400), Reply(status=200))
    hook = create_webhook(api, receiver).json()["data"]
    event_id = ingest(api, purchase)
    ingest(api, purchase, ref="r2")
    delivery = Delivery.objects.get(event_id=event_id)
    deliver_one(delivery.pk)  # 400: final

    failed = api.get(f"{API}/deliveries", {"status": "failed"}).json()["data"]
    assert [d["delivery_id"] for d in failed["deliveries"]] == [delivery.pk]
    by_event = api.get(f"{API}/deliveries", {"event_id": event_id}).json()["data"]
    assert by_event["total_items"] == 1
    by_hook = api.get(f"{API}/deliveries", {"webhook_id": hook["webhook_id"]}).json()["data"]
    assert by_hook["total_items"] == 2
    bad = api.get(f"{API}/deliveries", {"status": "lost"})
    assert bad.status_code == 400
    detail = api.get(f"{API}/deliveries/{delivery.pk}").json()["data"]
    assert [(a["number"], a["status_code"], a["outcome"]) for a in detail["attempts"]] == [
        (1, 400, "failed")
    ]

    with transaction.atomic():
        redone = api.post(f"{API}/deliveries/{delivery.pk}/redeliver")
    assert redone.status_code == 202
    assert redone.json()["data"]["status"] == "pending"
    assert Event.objects.get(pk=event_id).is_delivered is False
    assert deliver_one(delivery.pk) == "succeeded"
    # After the success the worker went on with the webhook's other due delivery (r2).
    first, second, follow_on = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert json.loads(follow_on.body)["event_id"] != event_id
    assert Event.objects.get(pk=event_id).is_delivered is True
    assert api.post(f"{API}/deliveries/nope/redeliver").status_code == 404


def test_ping_sends_a_signed_test_message(api, receiver, allow_loopback):
    hook = create_webhook(api, receiver).json()["data"]
    response = api.post(f"{API}/webhooks/{hook['webhook_id']}/test")
    assert response.status_code == 202
    delivery = Delivery.objects.get(pk=response.json()["data"]["delivery_id"])
    deliver_one(delivery.pk)
    payload = Webhook(hook["secret"]).verify(
        receiver.requests[0].body, receiver.requests[0].headers
    )
    assert payload["type"] == "webhook.test"
    assert payload["webhook_id"] == hook["webhook_id"]


def test_a_broker_outage_does_not_fail_ingestion_and_the_dispatcher_sends_later(
    api, receiver, allow_loopback, monkeypatch, django_capture_on_commit_callbacks
):
    purchase = EventTypeFactory(key="purchase")
    create_webhook(api, receiver)

    def broker_down(task, args_list):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("project.background.enqueue_many", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        event_id = ingest(api, purchase)

    delivery = Delivery.objects.get(event_id=event_id)
    assert (delivery.status, delivery.attempt_count) == ("pending", 0)
    assert receiver.requests == []
    monkeypatch.undo()
    Delivery.objects.filter(pk=delivery.pk).update(queued_until=delivery.created_at)
    assert dispatch_due_deliveries() == 1
    assert len(receiver.requests) == 1
