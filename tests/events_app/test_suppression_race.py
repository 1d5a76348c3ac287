"""A suppress request racing ingest of the same new identifier: whichever commits first,
the identifier does not exist once the suppression has committed (real threads, each
on its own connection, released together, many times over)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from django.db import connection

from customers.models import Customer
from customers.privacy.models import SuppressedIdentifier
from customers.privacy.services import privacy_request_create, privacy_request_run
from events_app import ingestion
from events_app.models import Event
from events_app.schemas import EventCreateIn
from project.errors import ForbiddenError
from tests.factories import CustomerFactory, EventTypeFactory, PropertyDefinitionFactory

ROUNDS = 25


def item(**customer: str) -> EventCreateIn:
    return msgspec.convert(
        {
            "event": {"event_type": "visit", **customer},
            "property_records": [{"property_id": "page", "property_value": "/"}],
        },
        EventCreateIn,
    )


def race(ingest: Callable[[], str], suppress: Callable[[], Any]) -> str:
    """Run both at once (released by a barrier); what ingest did: stored or refused."""
    barrier = threading.Barrier(2)
    outcome: list[str] = []

    def run(work: Callable[[], Any]) -> None:
        barrier.wait(timeout=30)
        try:
            work()
        finally:
            connection.close()

    def ingest_recording() -> None:
        outcome.append(ingest())

    threads = [threading.Thread(target=run, args=(w,)) for w in (ingest_recording, suppress)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcome, "ingest raised"
    return outcome[0]


def suppressor(kind: str, value: str) -> Callable[[], Any]:
    request = privacy_request_create(type="suppress", identifier_kind=kind, value=value)
    return lambda: privacy_request_run(request_id=request.pk)


def single(**customer: str) -> Callable[[], str]:
    def ingest() -> str:
        try:
            ingestion.event_ingest(item=item(**customer))
        except ForbiddenError:
            return "refused"
        return "stored"

    return ingest


def batch(known: Customer, **customer: str) -> Callable[[], str]:
    def ingest() -> str:
        result = ingestion.events_ingest_batch(
            items=[item(**customer), item(customer_id=known.pk), item(**customer)]
        )
        # The known customer's event is stored whatever happens to the suppressed one.
        assert [e.index for e in result.stored if e.customer_id == known.pk] == [1]
        if not result.invalid:
            return "stored"
        assert [(i.index, i.error) for i in result.invalid] == [
            (0, ingestion.CUSTOMER_SUPPRESSED),
            (2, ingestion.CUSTOMER_SUPPRESSED),
        ]
        return "refused"

    return ingest


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["single", "batch"])
@pytest.mark.parametrize(
    ("kind", "field"), [("external_id", "customer_external_id"), ("anonymous_id", "anonymous_id")]
)
def test_a_suppressed_new_identifier_never_outlives_a_racing_suppression(
    monkeypatch: pytest.MonkeyPatch, path: str, kind: str, field: str
):
    monkeypatch.setattr("project.background.enqueue_many", lambda task, args: None)
    visit = EventTypeFactory(key="visit")
    PropertyDefinitionFactory(event_type=visit, property_id="page")
    known = CustomerFactory(external_id="known")
    outcomes: Counter[str] = Counter()

    for n in range(ROUNDS):
        value = f"new-{n}"
        ingest = single(**{field: value}) if path == "single" else batch(known, **{field: value})

        outcomes[race(ingest, suppressor(kind, value))] += 1

        # The suppression has committed: the identifier is listed and names no one.
        assert SuppressedIdentifier.objects.filter(kind=kind).count() == n + 1
        assert not Customer.objects.filter(**{kind: value}).exists()
        assert Customer.objects.count() == 1
        # After it, the identifier is refused.
        assert single(**{field: value})() == "refused"

    assert outcomes.total() == ROUNDS
    assert Event.objects.exclude(customer=known).count() == 0
