"""Deleting an endpoint while attempts to it are in flight: the DELETE succeeds and every
attempt ends cleanly (real threads, each on its own connection, and a real receiver)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from automation.webhooks import services
from automation.webhooks.deliveries import delivery_build
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.sender import deliver_one
from automation.webhooks.services import endpoint_create
from events_app.api_clients import api_client_create
from events_app.models import Event
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory
from tests.receiver import ReceivedRequest, Receiver, Reply

IN_FLIGHT = 20
ROUNDS = 3


def _send(delivery_id: str) -> str:
    try:
        return deliver_one(delivery_id)
    finally:
        connections.close_all()


def _endpoint_with_deliveries(
    receiver: Receiver, count: int = IN_FLIGHT
) -> tuple[Endpoint, list[str]]:
    purchase = EventTypeFactory()
    endpoint, _ = endpoint_create(url=receiver.url())
    now = timezone.now()
    events = [EventFactory(event_type=purchase, customer=CustomerFactory()) for _ in range(count)]
    deliveries = Delivery.objects.bulk_create(
        delivery_build(endpoint, {"n": i}, event.pk, None, now) for i, event in enumerate(events)
    )
    Event.objects.filter(pk__in=[e.pk for e in events]).update(is_delivered=False)
    return endpoint, [d.pk for d in deliveries]


def _wait_until_blocked(sessions: int) -> None:
    """Until that many other sessions wait for a lock (the senders, blocked by the
    delete's locks), or 10 s: real processes, so real waiting."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] >= sessions:
                return
            time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_deleting_an_endpoint_with_attempts_in_flight_succeeds_and_they_end_cleanly(
    receiver, allow_loopback, settings, monkeypatch
):
    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = IN_FLIGHT
    release = threading.Event()
    refresh = services.events_refresh_delivered

    def refresh_then_let_the_attempts_record(*args: Any, **kwargs: Any) -> None:
        # Inside the delete's transaction, holding what it has locked so far: the
        # attempts answer now and record while the delete is half done.
        refresh(*args, **kwargs)
        release.set()
        _wait_until_blocked(IN_FLIGHT)

    monkeypatch.setattr(services, "events_refresh_delivered", refresh_then_let_the_attempts_record)
    _, secret = api_client_create(name="ops")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for _ in range(ROUNDS):
        receiver.requests.clear()
        release.clear()

        def held(_request: ReceivedRequest) -> Reply:
            release.wait(10)
            return Reply(status=200)

        receiver.responder = held
        endpoint, delivery_ids = _endpoint_with_deliveries(receiver)
        with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            sending = [pool.submit(_send, delivery_id) for delivery_id in delivery_ids]
            receiver.wait_for(IN_FLIGHT, timeout=30)
            deleted = api.delete(f"{API}/webhooks/{endpoint.pk}")
            outcomes = [future.result(timeout=30) for future in sending]

        assert deleted.status_code == 200, deleted.json()
        assert outcomes == ["succeeded"] * IN_FLIGHT
        assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
        assert Delivery.objects.filter(pk__in=delivery_ids).count() == 0
        assert DeliveryAttempt.objects.filter(delivery_id__in=delivery_ids).count() == 0
        # Whichever finished first, no event waits for a delivery that no longer exists.
        assert not Event.objects.filter(is_delivered=False).exists()


@pytest.mark.django_db(transaction=True)
def test_an_attempt_whose_endpoint_was_deleted_while_it_was_sent_records_nothing(
    receiver, allow_loopback
):
    endpoint, [delivery_id] = _endpoint_with_deliveries(receiver, 1)

    def delete_then_answer(_request: ReceivedRequest) -> Reply:
        # Another connection (the receiver's thread) deletes it and commits.
        try:
            services.endpoint_delete(endpoint=endpoint)
        finally:
            connections.close_all()
        return Reply(status=200)

    receiver.responder = delete_then_answer

    outcome = deliver_one(delivery_id)

    assert outcome == "succeeded"
    assert len(receiver.requests) == 1
    assert Delivery.objects.count() == 0
    assert DeliveryAttempt.objects.count() == 0
