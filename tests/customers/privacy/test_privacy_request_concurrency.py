"""Many workers at once: a request is claimed by one of them and run once."""

from __future__ import annotations

import contextlib
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


@pytest.mark.django_db(transaction=True)
def test_two_suppress_requests_naming_different_identifiers_of_one_person_both_finish(
    monkeypatch: pytest.MonkeyPatch,
):
    """Each request reads the person before the other locks anything: a request that
    locked its own identifier first and the other's after would deadlock here."""
    from customers.privacy import services

    monkeypatch.setattr("project.background.enqueue_many", lambda task, args: None)
    alice = CustomerFactory(external_id="alice", email="alice@example.com")
    EventFactory(customer=alice)
    by_id = privacy_request_create(type="suppress", identifier_kind="external_id", value="alice")
    by_email = privacy_request_create(
        type="suppress", identifier_kind="email", value="alice@example.com"
    )
    both_read = threading.Barrier(2)
    first_read = threading.local()
    matching = services.customers_matching

    def customers_matching_together(kind: str, value: str) -> Any:
        if not getattr(first_read, "done", False):
            first_read.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait(timeout=10)
        return matching(kind, value)

    monkeypatch.setattr(services, "customers_matching", customers_matching_together)
    requests = iter([by_id.pk, by_email.pk])
    lock = threading.Lock()

    def run_next() -> bool:
        with lock:
            request_id = next(requests)
        return privacy_request_run(request_id=request_id)

    assert run_at_once(2, run_next) == [True, True]

    statuses = {r.identifier_kind: r.status for r in PrivacyRequest.objects.all()}
    assert statuses == {"external_id": "done", "email": "done"}
    assert Customer.objects.count() == 0
    assert Event.objects.count() == 0
    listed = set(SuppressedIdentifier.objects.values_list("kind", flat=True))
    assert listed == {"external_id", "email"}
