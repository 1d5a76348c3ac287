"""A merge racing with ingestion for both customers: no event is lost, none points at a
customer that no longer exists, all land on the primary (real threads, real commits)."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pytest
from django.db import connection

from customers.identity.models import CustomerMerge
from customers.identity.services import customer_identify, customer_merge, merge_undo
from customers.models import Customer
from events_app.ingestion import event_ingest, events_ingest_batch
from events_app.models import EventType
from events_app.schemas import EventCreateIn
from tests.customers.identity.support import own_events

PER_WRITER = 30


def _item(**event: Any) -> EventCreateIn:
    return msgspec.convert({"event": {"event_type": "visit", **event}}, EventCreateIn)


def _race(primary: Customer, secondary: Customer, merge: Any) -> list[BaseException]:
    """Writers for both customers (by id, by external id, single and batch) while
    `merge` runs once they are all under way; returns what any thread raised."""
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def writer(make: Any, batch: bool) -> None:
        try:
            started.wait()
            for n in range(PER_WRITER):
                if batch:
                    result = events_ingest_batch(items=[make(n), make(n)])
                    assert not result.invalid, result.invalid
                else:
                    event_ingest(item=make(n))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def merger() -> None:
        try:
            started.wait()
            while own_events().count() < PER_WRITER:
                pass
            merge()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=writer, args=(lambda n: _item(customer_id=secondary.pk), False)),
        threading.Thread(target=writer, args=(lambda n: _item(customer_id=secondary.pk), True)),
        threading.Thread(target=writer, args=(lambda n: _item(customer_id=primary.pk), False)),
        threading.Thread(
            target=writer, args=(lambda n: _item(customer_external_id=primary.external_id), True)
        ),
        threading.Thread(target=merger),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.mark.django_db(transaction=True)
def test_events_ingested_during_a_merge_all_land_on_the_primary():
    EventType.objects.create(key="visit", name="Visit")
    primary = Customer.objects.create(external_id="primary")
    secondary = Customer.objects.create(anonymous_id="visitor")

    errors = _race(
        primary,
        secondary,
        lambda: customer_merge(primary_id=primary.pk, secondary_id=secondary.pk),
    )

    assert errors == []
    assert not Customer.objects.filter(pk=secondary.pk).exists()
    # 4 writers, two of them sending batches of two.
    assert own_events().count() == PER_WRITER * 6
    assert set(own_events().values_list("customer_id", flat=True)) == {primary.pk}
    assert CustomerMerge.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_events_ingested_during_an_undo_land_on_an_existing_customer_and_none_is_lost():
    EventType.objects.create(key="visit", name="Visit")
    primary = Customer.objects.create(external_id="primary")
    secondary = Customer.objects.create(anonymous_id="visitor")
    for _ in range(5):
        event_ingest(item=_item(customer_id=secondary.pk))
    merge = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)
    assert isinstance(merge, CustomerMerge)

    errors = _race(primary, secondary, lambda: merge_undo(merge_id=merge.pk))

    assert errors == []
    assert Customer.objects.filter(pk=secondary.pk).exists()
    assert own_events().count() == 5 + PER_WRITER * 6
    owners = set(own_events().values_list("customer_id", flat=True))
    assert owners == {primary.pk, secondary.pk}
    # The secondary's own events went back with the undo.
    assert own_events().filter(customer_id=secondary.pk).count() >= 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_identify_calls_make_one_customer_and_no_error():
    errors: list[BaseException] = []
    started = threading.Barrier(4)

    def identify() -> None:
        try:
            started.wait()
            customer_identify(anonymous_id="visitor-9", external_id="user-9")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=identify) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    customer = Customer.objects.get()
    assert (customer.external_id, customer.anonymous_id) == ("user-9", "visitor-9")
