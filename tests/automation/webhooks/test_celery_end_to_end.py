"""End to end with a real Celery worker, real Redis and a local receiver on 127.0.0.1."""

from __future__ import annotations

import pytest
from django.db import transaction
from standardwebhooks import Webhook

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.webhooks.sender import dispatch_due_deliveries
from events_app.models import Event
from tests.celery_worker import celery_broker, celery_worker, wait_until
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory
from tests.receiver import Reply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_ingested_event_is_delivered_by_a_celery_worker(api, receiver, allow_loopback):
    purchase = EventTypeFactory(key="purchase")
    hook = api.post(f"{API}/webhooks", {"webhook": {"url": receiver.url()}}, format="json").json()[
        "data"
    ]
    customer = CustomerFactory()

    with celery_broker() as broker, celery_worker(broker) as worker:
        response = api.post(
            f"{API}/events",
            {"event": {"event_type_id": purchase.id, "customer_id": customer.id}},
            format="json",
        )
        event_id = response.json()["data"]["event_id"]
        (request,) = receiver.wait_for(1, timeout=30)
        delivery = wait_until(
            lambda: Delivery.objects.filter(status="succeeded").first(), what="success"
        )

    assert "deliver_one" in worker.log()
    payload = Webhook(hook["secret"]).verify(request.body, request.headers)
    assert payload["event_id"] == event_id
    assert request.headers["webhook-id"] == delivery.message_id
    assert delivery.attempt_count == 1
    assert Event.objects.get(pk=event_id).is_delivered is True


def test_worker_killed_mid_delivery_loses_nothing_and_retries_with_the_same_id(
    make_endpoint, receiver
):
    # The first request hangs (the worker is killed while waiting); the next one succeeds.
    receiver.reply(Reply(status=200, delay=60), Reply(status=200))
    endpoint, secret = make_endpoint()
    fast_lease = {"HERALD_OUTBOUND_TIMEOUT": "3", "HERALD_DELIVERY_CLAIM_MARGIN": "1"}

    with celery_broker() as broker:
        with celery_worker(broker, env=fast_lease) as doomed:
            with transaction.atomic():
                delivery = delivery_create(endpoint=endpoint, payload={"order": 7})
            receiver.wait_for(1, timeout=30)
            doomed.kill()
        claimed = Delivery.objects.get(pk=delivery.pk)
        assert (claimed.status, claimed.attempt_count) == ("pending", 1)
        assert DeliveryAttempt.objects.count() == 0  # the attempt died with the worker

        with celery_worker(broker, env=fast_lease):
            # The dispatcher (Celery beat in production) finds the lapsed claim.
            wait_until(lambda: dispatch_due_deliveries() == 1, what="lease to lapse")
            receiver.wait_for(2, timeout=30)
            done = wait_until(
                lambda: Delivery.objects.filter(pk=delivery.pk, status="succeeded").first(),
                what="success",
            )

    first, second = receiver.requests[:2]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.message_id
    assert Webhook(secret).verify(second.body, second.headers) == {"order": 7}
    assert done.attempt_count == 2
    assert list(done.attempts.values_list("number", "status_code")) == [(2, 200)]
