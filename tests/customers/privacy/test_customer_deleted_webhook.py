"""The `customer.deleted` webhook: a signed message to the subscriptions that list the
reserved key, naming the customer's ids and nothing else."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from automation.webhooks.models import Delivery
from tests.conftest import API
from tests.customers.conftest import History
from tests.customers.privacy.conftest import File
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db


def subscribe(api, receiver: Receiver, path: str, event_types: list[str]) -> tuple[str, str]:
    response = api.post(
        f"{API}/webhooks",
        {"webhook": {"url": receiver.url(path), "event_types": event_types}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    return data["webhook_id"], data["secret"]


def test_a_deleted_customer_is_announced_signed_to_subscriptions_listing_the_key(
    customer_history: History,
    file_request: File,
    api,
    receiver: Receiver,
    allow_loopback: None,
):
    alice = customer_history("alice", 2)
    webhook_id, secret = subscribe(api, receiver, "/deleted", ["customer.deleted"])
    subscribe(api, receiver, "/purchases", ["purchase"])

    done = file_request("delete", external_id="alice")

    assert done["status"] == "done"
    (request,) = receiver.requests
    assert request.path == "/deleted"
    assert Webhook(secret).verify(request.body, request.headers) == {
        "type": "customer.deleted",
        "data": {"customer_id": alice.pk, "external_id": "alice"},
    }
    # About a person who is no longer there: it names no customer.
    sent = Delivery.objects.get(endpoint_id=webhook_id)
    assert (sent.status, sent.event_id, sent.customer_id) == ("succeeded", None, None)


def test_the_reserved_key_is_shown_with_the_event_types_and_takes_no_events(
    api, receiver: Receiver, allow_loopback: None, customer_history: History
):
    webhook_id, _ = subscribe(api, receiver, "/deleted", ["customer.deleted"])

    shown = api.get(f"{API}/webhooks/{webhook_id}").json()["data"]
    customer_history("bob", 2)  # purchases ingested and fanned out

    assert shown["event_types"] == ["customer.deleted"]
    assert Delivery.objects.filter(endpoint_id=webhook_id).count() == 0


def test_a_subscription_to_every_event_type_is_not_told_of_deletions(
    customer_history: History, file_request: File, api, receiver: Receiver, allow_loopback: None
):
    customer_history("alice", 1)
    webhook_id, _ = subscribe(api, receiver, "/all", [])

    file_request("delete", external_id="alice")

    assert receiver.requests == []
    assert Delivery.objects.filter(endpoint_id=webhook_id, event__isnull=False).count() == 0
