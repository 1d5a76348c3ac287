"""GET /events `total_items` stays exact through every write path (PostgreSQL counters)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum
from rest_framework.test import APIClient

from customers.services import customer_delete
from events_app import selectors
from events_app.event_types import event_type_delete
from events_app.ingestion import event_ingest, events_prepare, events_store
from events_app.models import Event, EventCount, EventType
from events_app.partitions.ondemand import partitions_cover
from events_app.schemas import EventCreateIn, EventIn
from project.ids import new_public_id
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def counter(event_type: EventType | None = None) -> int:
    rows = EventCount.objects.all()
    if event_type is not None:
        rows = rows.filter(event_type=event_type)
    return int(rows.aggregate(n=Sum("events"))["n"] or 0)


def total_items(api: APIClient, **params: str) -> int:
    response = api.get(f"{API}/events", params)
    assert response.status_code == 200, response.json()
    return int(response.json()["data"]["total_items"])


def assert_totals(api: APIClient, expected: dict[EventType, int]) -> None:
    """The API total, the counter table and COUNT(*) agree, per type and overall."""
    everything = sum(expected.values())
    assert Event.objects.count() == everything
    assert counter() == everything
    assert total_items(api) == everything
    for event_type, n in expected.items():
        assert Event.objects.filter(event_type=event_type).count() == n
        assert counter(event_type) == n
        assert total_items(api, event_type_id=event_type.id) == n


@pytest.fixture
def types() -> tuple[EventType, EventType]:
    return EventTypeFactory(key="purchase"), EventTypeFactory(key="login")


def test_orm_saves_and_ingestion_are_counted(api: APIClient, types) -> None:
    purchase, login = types
    EventFactory.create_batch(3, event_type=purchase)
    EventFactory(event_type=login)
    event_ingest(item=EventCreateIn(event=EventIn(event_type="login", customer_external_id="c-1")))

    assert_totals(api, {purchase: 3, login: 2})


def test_bulk_insert_paths_are_counted(api: APIClient, types) -> None:
    purchase, login = types
    customer = CustomerFactory()
    items = [
        EventCreateIn(event=EventIn(event_type=key, customer_id=customer.id))
        for key in ["purchase"] * 4 + ["login"] * 6
    ]
    prepared, invalid = events_prepare(items=items)
    assert invalid == []
    events_store(prepared=prepared)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    Event.objects.bulk_create(
        [Event(event_type=purchase, customer=customer, occurred_at=now) for _ in range(5)]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_app_event (id, event_type_id, customer_id, data, occurred_at,"
            " created_at, state, is_delivered, automation_pending, depth)"
            " SELECT substr(id, 1, 25) || 'x', %s, customer_id, data, occurred_at, created_at,"
            " state, is_delivered, automation_pending, depth FROM events_app_event"
            " WHERE event_type_id = %s",
            [login.id, login.id],
        )

    assert_totals(api, {purchase: 9, login: 12})


def test_copy_is_counted(api: APIClient, types) -> None:
    purchase, login = types
    customer = CustomerFactory()
    # A raw writer makes the month's partition first (there is no default partition).
    partitions_cover([datetime(2026, 1, 1, tzinfo=UTC)])
    with connection.cursor() as cursor:
        copy_sql = (
            "COPY events_app_event (id, event_type_id, customer_id, data, occurred_at,"
            " created_at, state, is_delivered, automation_pending, depth) FROM STDIN"
        )
        with cursor.cursor.copy(copy_sql) as copy:
            for type_id in [purchase.id, purchase.id, login.id]:
                copy.write_row(
                    (
                        new_public_id(),
                        type_id,
                        customer.id,
                        "{}",
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:00Z",
                        1,
                        True,
                        False,
                        0,
                    )
                )

    assert_totals(api, {purchase: 2, login: 1})


def test_deletes_are_counted(api: APIClient, types) -> None:
    purchase, login = types
    single, *_ = EventFactory.create_batch(4, event_type=purchase)
    logins = EventFactory.create_batch(3, event_type=login)

    single.delete()
    Event.objects.filter(pk__in=[logins[0].pk, logins[1].pk]).delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM events_app_event WHERE id = %s", [logins[2].pk])

    assert_totals(api, {purchase: 3, login: 0})


def test_customer_delete_cascades_into_the_counts(api: APIClient, types) -> None:
    purchase, login = types
    leaving, staying = CustomerFactory(), CustomerFactory()
    EventFactory.create_batch(3, event_type=purchase, customer=leaving)
    EventFactory.create_batch(2, event_type=login, customer=leaving)
    EventFactory.create_batch(2, event_type=purchase, customer=staying)

    customer_delete(customer=leaving)

    assert_totals(api, {purchase: 2, login: 0})


def test_changing_an_events_type_moves_it_between_counts(api: APIClient, types) -> None:
    purchase, login = types
    events = EventFactory.create_batch(3, event_type=purchase)

    Event.objects.filter(pk=events[0].pk).update(event_type=login)
    Event.objects.filter(pk=events[1].pk).update(state=Event.State.COMPLETED)  # same type

    assert_totals(api, {purchase: 2, login: 1})


def test_truncate_resets_the_counts(api: APIClient, types) -> None:
    purchase, login = types
    EventFactory.create_batch(2, event_type=purchase)
    with connection.cursor() as cursor:
        # Run the deferred FK checks of the inserts first: TRUNCATE refuses pending ones.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE events_app_event CASCADE")

    assert_totals(api, {purchase: 0, login: 0})
    assert EventCount.objects.count() == 0


def test_filters_the_counters_cannot_answer_fall_back_to_an_exact_count(
    api: APIClient, types
) -> None:
    purchase, login = types
    alice, bob = CustomerFactory(), CustomerFactory()
    EventFactory.create_batch(3, event_type=purchase, customer=alice)
    EventFactory.create_batch(2, event_type=login, customer=alice)
    EventFactory.create_batch(4, event_type=purchase, customer=bob)
    Event.objects.filter(customer=bob).update(state=Event.State.COMPLETED)

    assert total_items(api, customer_id=alice.id) == 5
    assert total_items(api, customer_id=alice.id, event_type_id=purchase.id) == 3
    assert total_items(api, event_type_id=purchase.id, status="completed") == 4
    assert total_items(api, status="pending") == 5
    assert total_items(api, event_type_id="no-such-type") == 0


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda t: Event.objects.all(), (True, None)),
        (lambda t: Event.objects.filter(event_type_id=t.id), (True, "TYPE")),
        (lambda t: Event.objects.filter(event_type=t), (True, "TYPE")),
        (lambda t: Event.objects.exclude(event_type_id=t.id), (False, None)),
        (lambda t: Event.objects.filter(event_type_id=t.id, state=1), (False, None)),
        (lambda t: Event.objects.filter(customer_id="x"), (False, None)),
        (lambda t: Event.objects.filter(event_type__key=t.key), (False, None)),
        (lambda t: Event.objects.distinct(), (False, None)),
    ],
)
def test_counters_answer_only_whole_table_or_one_type(types, build, expected) -> None:
    purchase, _ = types
    answerable, type_id = expected

    scope = selectors._counter_scope(build(purchase))

    assert scope == (answerable, purchase.id if type_id == "TYPE" else type_id)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_use_different_counter_slots_without_waiting() -> None:
    """A writer holding its slot open does not block a writer on another connection."""
    purchase = EventTypeFactory(key="purchase")
    customer = CustomerFactory()
    settings = connection.settings_dict
    conninfo = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "host": settings["HOST"],
        "port": settings["PORT"] or 5432,
    }
    insert = (
        "INSERT INTO events_app_event (id, event_type_id, customer_id, data, occurred_at,"
        " created_at, state, is_delivered, automation_pending, depth)"
        " VALUES (%s, %s, %s, '{}', now(), now(), 1, true, false, 0)"
    )
    first = psycopg.connect(**conninfo)
    others: list[psycopg.Connection] = []
    try:
        first_slot = first.execute("SELECT mod(pg_backend_pid(), 32)").fetchone()[0]
        second = None
        for _ in range(10):  # find a connection whose pid maps to another slot
            candidate = psycopg.connect(**conninfo)
            others.append(candidate)
            if candidate.execute("SELECT mod(pg_backend_pid(), 32)").fetchone()[0] != first_slot:
                second = candidate
                break
        assert second is not None
        second.commit()
        first.execute(insert, (new_public_id(), purchase.id, customer.id))  # holds its slot row
        second.execute("SET lock_timeout = '2s'")
        second.execute(insert, (new_public_id(), purchase.id, customer.id))
        second.commit()  # did not wait for `first`
        first.commit()
    finally:
        first.close()
        for other in others:
            other.close()

    assert counter(purchase) == 2
    assert EventCount.objects.filter(event_type=purchase).count() == 2


def test_type_whose_events_were_deleted_can_be_deleted_and_its_ingested_count_stays(
    types,
) -> None:
    purchase, login = types
    EventFactory.create_batch(2, event_type=purchase)
    EventFactory(event_type=login)
    Event.objects.filter(event_type=purchase).delete()
    assert EventCount.objects.filter(event_type=purchase).exists()  # slots at zero remain

    event_type_delete(event_type=purchase)

    assert not EventType.objects.filter(pk=purchase.pk).exists()
    # The counters stay (events 0): herald_events_ingested_total never goes down.
    left = EventCount.objects.filter(event_type_id=purchase.pk).aggregate(
        events=Sum("events"), ingested=Sum("ingested")
    )
    assert left == {"events": 0, "ingested": 2}
    assert counter() == 1
