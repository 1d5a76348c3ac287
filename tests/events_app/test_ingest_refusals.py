"""What ingestion refuses writes nothing: one bad event never sinks its batch, a refused
event creates no customer, a request that fails stores nothing at all."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from customers.models import Customer
from events_app import ingest_store, ingestion, storable
from events_app.models import Event, PropertyRecord
from events_app.schemas import EventCreateIn
from project.errors import ValidationFailed
from tests.conftest import API
from tests.events_app.test_batch_ingest import wait_until_a_backend_waits_on_a_lock
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def visit():
    return EventTypeFactory(key="visit")


def body(customer: str = "c-1", **event: Any) -> dict[str, Any]:
    return {"event": {"event_type": "visit", "customer_external_id": customer, **event}}


def items(*bodies: dict[str, Any]) -> list[EventCreateIn]:
    return [msgspec.convert(b, EventCreateIn) for b in bodies]


def counts() -> tuple[int, int, int]:
    return (Event.objects.count(), Customer.objects.count(), PropertyRecord.objects.count())


# ---------------------------------------------------------------- one bad event


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        (
            {"data": {"note": "a\x00b"}},
            "event.data",
            "data: a string contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"data": {"a\x00": 1}},
            "event.data",
            "data: a key contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"data": '{"deep": [{"x": "\\u0000"}]}'},
            "event.data",
            # The data decoder (events_app.schemas) refuses it before the storability check.
            "data is not accepted (at deep[0].x): Null characters (\\u0000) are not allowed.",
        ),
        (
            {"external_id": "r\x00"},
            "event.external_id",
            "external_id contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"customer_external_id": "nul\x00customer"},
            "event.customer_external_id",
            "customer_external_id contains a NUL character (\\u0000), which cannot be stored.",
        ),
        (
            {"occurred_at": "0001-01-01T00:00:00+01:00"},
            "event.occurred_at",
            "occurred_at is out of range: its UTC time must fall within the years 1-9999.",
        ),
        (
            {"occurred_at": "9999-12-31T23:59:59-01:00"},
            "event.occurred_at",
            "occurred_at is out of range: its UTC time must fall within the years 1-9999.",
        ),
    ],
)
def test_one_unstorable_event_among_1000_is_invalid_and_the_999_are_stored(
    visit, bad, field, message
):
    batch = [body(f"c-{n % 10}", external_id=f"r-{n}") for n in range(1000)]
    batch[500] = body("only-the-bad-one", **{"external_id": "r-500", **bad})
    before = counts()

    result = ingestion.events_ingest_batch(items=items(*batch))

    assert [(i.index, i.error, i.details) for i in result.invalid] == [
        (500, f"{field}: {message}", {field: [message]})
    ]
    assert len(result.stored) == 999
    assert counts() == (before[0] + 999, before[1] + 10, before[2])
    assert not Customer.objects.filter(external_id="only-the-bad-one").exists()


def test_an_offset_postgresql_cannot_store_is_stored_as_its_utc_instant(visit):
    (event,) = ingestion.events_ingest_batch(
        items=items(body(occurred_at="2026-01-01T00:00:00+20:00"))
    ).stored

    stored = Event.objects.get(pk=event.id)
    assert stored.occurred_at.isoformat() == "2025-12-31T04:00:00+00:00"


def test_single_post_of_an_unstorable_event_is_400_and_writes_nothing(api, visit):
    before = counts()

    response = api.post(
        f"{API}/events",
        body("new-customer", occurred_at="0001-01-01T00:00:00+01:00"),
        format="json",
    )

    assert response.status_code == 400
    # The API's body decoder refuses it before ingestion sees it.
    assert response.json()["details"] == {
        "event.occurred_at": ["Out of range: in UTC the datetime must fall in the years 1-9999."]
    }
    assert counts() == before


@pytest.mark.django_db(transaction=True)
def test_an_event_the_database_refuses_unforeseen_is_isolated_and_the_rest_stored(
    visit, monkeypatch
):
    # The checks before the insert are switched off, so the one statement fails in
    # PostgreSQL: ingestion must find the refused event and store the others.
    monkeypatch.setattr(storable, "text_problem", lambda value: None)
    batch = [body(f"c-{n % 4}", external_id=f"r-{n}") for n in range(40)]
    batch[17] = body("only-the-bad-one", data={"note": "a\x00b"})
    batch[33] = body("c-1", external_id="r-33", secondary_external_id="s\x00")

    result = ingestion.events_ingest_batch(items=items(*batch))

    reason = "The database refused this event: unsupported Unicode escape sequence."
    assert [(i.index, i.error, i.details) for i in result.invalid] == [
        (17, f"event: {reason}", {"event": [reason]}),
        (33, f"event: {reason}", {"event": [reason]}),
    ]
    assert [e.index for e in result.stored] == [n for n in range(40) if n not in (17, 33)]
    assert counts() == (38, 4, 0)
    assert not Customer.objects.filter(external_id="only-the-bad-one").exists()


@pytest.mark.django_db(transaction=True)
def test_a_single_event_the_database_refuses_is_refused_and_writes_nothing(visit, monkeypatch):
    # Past every check before the insert (the API's decoder would refuse it earlier).
    monkeypatch.setattr(storable, "text_problem", lambda value: None)
    monkeypatch.setattr(ingestion, "event_data_decode", lambda value: value)

    with pytest.raises(ValidationFailed) as refused:
        ingestion.event_ingest(item=items(body("new", data={"x": "\x00"}))[0])

    assert refused.value.message == (
        "event: The database refused this event: unsupported Unicode escape sequence."
    )
    assert counts() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_in_the_database_writes_nothing_not_even_customers(visit, monkeypatch):
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(ingest_store, "pg_insert_events", unavailable)

    with pytest.raises(OperationalError):
        ingestion.events_ingest_batch(items=items(body("a"), body("b"), body("c", external_id="r")))

    assert counts() == (0, 0, 0)


# ---------------------------------------------------------------- refusals create no customer


def test_a_single_post_refused_with_409_creates_no_customer(api, visit):
    EventFactory(event_type=visit, external_id="taken")
    before = counts()

    response = api.post(f"{API}/events", body("newcomer", external_id="taken"), format="json")

    assert response.status_code == 409
    assert counts() == before
    assert not Customer.objects.filter(external_id="newcomer").exists()


def test_a_single_post_refused_with_400_creates_no_customer(api, visit):
    before = counts()

    response = api.post(f"{API}/events", body("newcomer", data="[1]"), format="json")

    assert response.status_code == 400
    assert counts() == before


def test_batch_items_refused_as_duplicates_or_invalid_create_no_customer(api, visit):
    EventFactory(event_type=visit, external_id="taken")
    before = counts()

    response = api.post(
        f"{API}/events/batch",
        {
            "events": [
                body("dup-stored", external_id="taken"),
                body("kept", external_id="fresh"),
                body("dup-in-batch", external_id="fresh"),
                body("bad-data", data="not json"),
                {"event": {"event_type": "nope", "customer_external_id": "bad-type"}},
            ]
        },
        format="json",
    )

    data = response.json()["data"]
    assert [v["index"] for v in data["valid_events"]] == [1]
    assert [i["index"] for i in data["invalid_events"]] == [0, 2, 3, 4]
    assert counts() == (before[0] + 1, before[1] + 1, before[2])
    kept = Customer.objects.get(external_id="kept")
    assert data["valid_events"][0]["customer_id"] == kept.pk


def test_a_new_customer_is_created_with_the_event_in_the_same_statement(api, visit, monkeypatch):
    # The one-statement attempt (the type kept from the warm-up; it finds no customer
    # and writes nothing), the suppression lock of the new identifier and the INSERT:
    # the customer adds no statement of its own.
    api.post(f"{API}/events", body("warm"), format="json")
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    response = api.post(f"{API}/events", body("brand-new"), format="json")
    monkeypatch.undo()

    assert response.status_code == 201
    statements = [q for q in sent if "SAVEPOINT" not in q]
    assert len(statements) == 3
    assert "pg_advisory_xact_lock_shared" in statements[1]
    assert 'INSERT INTO "customers_customer"' in statements[2]
    customer = Customer.objects.get(external_id="brand-new")
    event = Event.objects.get(pk=response.json()["data"]["event_id"])
    assert (event.customer_id, customer.created_at) == (customer.pk, event.created_at)


def test_events_naming_a_known_customer_by_external_id_create_none(visit):
    known = CustomerFactory(external_id="known")

    result = ingestion.events_ingest_batch(items=items(body("known"), body("known")))

    assert {e.customer_id for e in result.stored} == {known.pk}
    assert Customer.objects.count() == 1


# ---------------------------------------------------------------- concurrency


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second_in_transaction", [False, True])
def test_two_writers_creating_one_external_id_end_with_one_customer_and_both_events(
    visit, second_in_transaction, monkeypatch
):
    # Both judged before either stored: each allots its own id for "shared". Writer A
    # inserts and holds its transaction; writer B's insert waits on A's customer row,
    # loses, and must store its events on A's customer.
    first, _ = ingestion.events_prepare(items=items(body("shared", external_id="a")))
    second, _ = ingestion.events_prepare(
        items=items(body("shared", external_id="b"), body("other", external_id="c"))
    )
    assert first[0].customer_id != second[0].customer_id
    allotted = {p.new_customer: p.customer_id for p in second}
    inserted, release = threading.Event(), threading.Event()
    results: dict[str, ingestion.StoreResult] = {}
    rereads: list[set[str]] = []
    reread = ingest_store._customers_reread

    def spy(prepared: Any, customer_ids: set[str]) -> None:
        rereads.append(set(customer_ids))
        reread(prepared, customer_ids)

    monkeypatch.setattr(ingest_store, "_customers_reread", spy)

    def writer_a() -> None:
        try:
            with transaction.atomic():
                results["a"] = ingestion.events_store(prepared=first)
                inserted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def writer_b() -> None:
        try:
            if second_in_transaction:
                with transaction.atomic():
                    results["b"] = ingestion.events_store(prepared=second)
            else:
                results["b"] = ingestion.events_store(prepared=second)
        finally:
            connection.close()

    a = threading.Thread(target=writer_a)
    a.start()
    assert inserted.wait(timeout=30)
    b = threading.Thread(target=writer_b)
    b.start()
    wait_until_a_backend_waits_on_a_lock()
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)

    shared = Customer.objects.get(external_id="shared")
    assert Customer.objects.count() == 2
    assert sorted(Event.objects.filter(customer=shared).values_list("external_id", flat=True)) == [
        "a",
        "b",
    ]
    other = Customer.objects.get(external_id="other")
    assert [e.customer_id for e in results["b"].stored] == [shared.pk, other.pk]
    # Only the id allotted to the customer taken: the statement reports it (creating
    # customers runs in a transaction or savepoint of its own, which it takes back).
    assert rereads == [{allotted["shared"]}]
