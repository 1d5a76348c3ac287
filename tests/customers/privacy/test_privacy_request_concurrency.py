"""Many workers at once: a request is claimed by one of them and run once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from customers.models import Customer
from customers.privacy.models import PrivacyRequest, SuppressedIdentifier
from customers.privacy.services import privacy_request_create, privacy_request_run
from events_app.models import Event
from tests.factories import CustomerFactory, EventFactory


def run_at_once(n: int, work: Callable[[], Any]) -> list[Any]:
    """Run `work` in n threads released together; each closes its connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_four_workers_given_one_suppress_run_it_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("project.background.enqueue_many", lambda task, args: None)
    customer = CustomerFactory(external_id="alice")
    for _ in range(3):
        EventFactory(customer=customer)
    request = privacy_request_create(type="suppress", identifier_kind="external_id", value="alice")

    results = run_at_once(4, lambda: privacy_request_run(request_id=request.pk))

    assert sorted(results) == [False, False, False, True]
    request.refresh_from_db()
    assert (request.status, request.attempts, request.identifier_value) == ("done", 1, "")
    assert (request.counts["customers"], request.counts["events"]) == (1, 3)
    assert (Customer.objects.count(), Event.objects.count()) == (0, 0)
    assert SuppressedIdentifier.objects.count() == 2  # her external id and email
    assert PrivacyRequest.objects.count() == 1
