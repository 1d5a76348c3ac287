"""The embedded default: tasks on the in-process pool, periodic jobs on the ticker."""

from __future__ import annotations

import time

import pytest
from django.db import transaction
from django.utils import timezone

from automation.webhooks.deliveries import delivery_build
from automation.webhooks.models import Delivery
from project import background
from project.celery import app
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runner(monkeypatch):
    """An embedded runner as project/wsgi.py starts it (no broker), stopped afterwards."""
    assert app.conf.task_always_eager  # no broker in the test settings
    started = background.EmbeddedRunner(tick_seconds=0.05, threads=2)
    monkeypatch.setattr(background, "_runner", started)
    started.start()
    yield started
    started.stop()


def test_batch_ingestion_delivers_through_the_embedded_runner(
    api, receiver, allow_loopback, runner
):
    purchase = EventTypeFactory(key="purchase")
    api.post(f"{API}/webhooks", {"webhook": {"url": receiver.url()}}, format="json")
    customer = CustomerFactory()
    events = [
        {
            "event": {
                "event_type_id": purchase.id,
                "customer_id": customer.id,
                "external_id": f"b{i}",
            }
        }
        for i in range(3)
    ]

    response = api.post(f"{API}/events/batch", {"events": events}, format="json")

    assert response.status_code == 200, response.json()
    requests = receiver.wait_for(3, timeout=20)
    assert len({r.headers["webhook-id"] for r in requests}) == 3


def test_the_ticker_runs_the_dispatcher_for_lost_messages(receiver, make_endpoint, runner):
    endpoint, _ = make_endpoint()
    with transaction.atomic():
        delivery = delivery_build(endpoint, {"lost": True}, None, None, timezone.now())
        delivery.queued_until = None  # as if its task message had been lost
        delivery.save(force_insert=True)

    (request,) = receiver.wait_for(1, timeout=20)

    assert request.headers["webhook-id"] == delivery.message_id
    assert wait_for_status(delivery.pk, "succeeded")


def wait_for_status(delivery_id: str, status: str, timeout: float = 10.0) -> bool:
    """The runner records the result on its own thread: poll the row (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Delivery.objects.filter(pk=delivery_id, status=status).exists():
            return True
        time.sleep(0.05)
    return False
