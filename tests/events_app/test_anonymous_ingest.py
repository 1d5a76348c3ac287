"""Events naming their customer by `anonymous_id`: anonymous customers are created by
their first event, found by their anonymous id (or an anonymous alias) afterwards."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import msgspec
import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.models import Customer, CustomerAlias
from events_app import ingest_store, ingestion
from events_app.api_clients import api_client_create
from events_app.models import Event, PropertyRecord
from events_app.schemas import EventCreateIn
from tests.conftest import API, basic_auth
from tests.factories import CustomerFactory, EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

THREADS = 50
NUL = "Null characters (\\u0000) are not allowed."


@pytest.fixture
def visit():
    event_type = EventTypeFactory(key="visit")
    PropertyDefinitionFactory(event_type=event_type, property_id="page", required=True)
    return event_type


def item(ref: str | None = None, **customer: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": {"event_type": "visit", **(customer or {"anonymous_id": "anon-1"})},
        "property_records": [{"property_id": "page", "property_value": "/pricing"}],
    }
    if ref is not None:
        body["event"]["external_id"] = ref
    return body


def post(api: APIClient, body: Any) -> Any:
    return api.post(f"{API}/events", body, format="json")


def post_batch(api: APIClient, items: list[Any]) -> Any:
    return api.post(f"{API}/events/batch", {"events": items}, format="json")


def counts() -> tuple[int, int, int]:
    return Event.objects.count(), Customer.objects.count(), PropertyRecord.objects.count()


def test_first_event_of_an_anonymous_id_creates_an_anonymous_customer(api, visit):
    response = post(api, item("r-1", anonymous_id="anon-1"))

    assert response.status_code == 201, response.json()
    event = Event.objects.get(pk=response.json()["data"]["event_id"])
    customer = Customer.objects.get()
    assert (customer.external_id, customer.anonymous_id, customer.is_anonymous) == (
        None,
        "anon-1",
        True,
    )
    assert event.customer_id == customer.pk
    detail = api.get(f"{API}/customers/{customer.pk}").json()["data"]
    assert (
        detail["external_id"],
        detail["anonymous_id"],
        detail["is_anonymous"],
        detail["aliases"],
    ) == (None, "anon-1", True, [])


def test_later_events_of_the_anonymous_id_land_on_the_same_customer(api, visit):
    first = post(api, item("r-1", anonymous_id="anon-1")).json()["data"]["event_id"]

    second = post(api, item("r-2", anonymous_id="anon-1"))

    assert second.status_code == 201, second.json()
    customer_ids = set(Event.objects.values_list("customer_id", flat=True))
    assert customer_ids == {Event.objects.get(pk=first).customer_id}
    assert Customer.objects.count() == 1


def test_an_identified_customer_keeps_receiving_events_of_their_anonymous_id(api, visit):
    customer = CustomerFactory(external_id="alice", anonymous_id="anon-1")

    response = post(api, item(anonymous_id="anon-1"))

    assert response.status_code == 201, response.json()
    assert Event.objects.get().customer_id == customer.pk
    assert Customer.objects.count() == 1


def test_an_anonymous_alias_resolves_to_its_customer(api, visit):
    customer = CustomerFactory(external_id="alice")
    CustomerAlias.objects.create(customer=customer, kind="anonymous", value="anon-old")

    single = post(api, item("r-1", anonymous_id="anon-old"))
    batch = post_batch(api, [item("r-2", anonymous_id="anon-old")])

    assert single.status_code == 201, single.json()
    assert [e["customer_id"] for e in batch.json()["data"]["valid_events"]] == [customer.pk]
    assert set(Event.objects.values_list("customer_id", flat=True)) == {customer.pk}
    assert Customer.objects.count() == 1


def test_a_customers_own_anonymous_id_wins_over_another_customers_alias(api, visit):
    owner = CustomerFactory(external_id=None, anonymous_id="anon-1")
    CustomerAlias.objects.create(customer=CustomerFactory(), kind="anonymous", value="anon-1")

    response = post(api, item(anonymous_id="anon-1"))

    assert response.status_code == 201, response.json()
    assert Event.objects.get().customer_id == owner.pk


def test_batch_creates_one_customer_per_new_anonymous_id(api, visit):
    items = [
        item("r-1", anonymous_id="anon-1"),
        item("r-2", anonymous_id="anon-2"),
        item("r-3", anonymous_id="anon-1"),
        # The same text as an external id is another person.
        item("r-4", customer_external_id="anon-1"),
    ]

    response = post_batch(api, items)

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["invalid_events"] == []
    by_index = {e["index"]: e["customer_id"] for e in data["valid_events"]}
    anonymous = dict(
        Customer.objects.filter(anonymous_id__isnull=False).values_list("anonymous_id", "id")
    )
    identified = Customer.objects.get(external_id="anon-1")
    assert by_index == {
        0: anonymous["anon-1"],
        1: anonymous["anon-2"],
        2: anonymous["anon-1"],
        3: identified.pk,
    }
    assert identified.anonymous_id is None
    assert counts() == (4, 3, 4)


def test_refused_event_of_a_new_anonymous_id_creates_no_customer(api, visit):
    body = item(anonymous_id="anon-1")
    body["property_records"] = []

    response = post(api, body)
    batch = post_batch(api, [body])

    assert response.status_code == 400
    missing = "Required property 'page' is missing."
    assert response.json()["details"] == {"property_records": [missing]}
    assert [i["index"] for i in batch.json()["data"]["invalid_events"]] == [0]
    assert counts() == (0, 0, 0)


def test_duplicate_ref_of_a_new_anonymous_id_creates_no_customer(api, visit):
    stored = post(api, item("r-1", anonymous_id="anon-1")).json()["data"]["event_id"]

    response = post(api, item("r-1", anonymous_id="anon-2"))

    assert response.status_code == 409
    assert response.json()["event_id"] == stored
    assert list(Customer.objects.values_list("anonymous_id", flat=True)) == ["anon-1"]


@pytest.mark.parametrize(
    ("customer", "message"),
    [
        (
            {"anonymous_id": "anon-1", "customer_external_id": "alice"},
            "Give exactly one of customer_id, customer_external_id or anonymous_id.",
        ),
        (
            {"anonymous_id": "anon-1", "customer_id": "cus_1"},
            "Give exactly one of customer_id, customer_external_id or anonymous_id.",
        ),
        ({}, "Give exactly one of customer_id, customer_external_id or anonymous_id."),
    ],
)
def test_naming_the_customer_other_than_exactly_once_is_400(api, visit, customer, message):
    body = item()
    body["event"] = {"event_type": "visit", **customer}

    response = post(api, body)

    assert response.status_code == 400
    assert response.json()["details"] == {"event.customer_id": [message]}
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Expected `str` of length >= 1"),
        ("a" * 256, "Expected `str` of length <= 255"),
        (7, "Expected `str | null`, got `int`"),
        ("anon\u0000", NUL),
    ],
)
def test_an_anonymous_id_the_database_cannot_take_is_400_naming_the_field(
    api, visit, value, message
):
    response = post(api, item(anonymous_id=value))
    batch = post_batch(api, [item(anonymous_id=value), item("ok", anonymous_id="anon-ok")])

    assert response.status_code == 400
    assert response.json()["details"] == {"event.anonymous_id": [message]}
    data = batch.json()["data"]
    assert [(i["index"], i["details"]) for i in data["invalid_events"]] == [
        (0, {"event.anonymous_id": [message]})
    ]
    assert [e["index"] for e in data["valid_events"]] == [1]
    assert list(Customer.objects.values_list("anonymous_id", flat=True)) == ["anon-ok"]


def test_a_lone_surrogate_in_an_anonymous_id_is_400_and_stores_nothing(api, visit):
    raw = json.dumps(item(anonymous_id="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800")

    response = api.post(f"{API}/events", raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["message"].startswith("Malformed JSON body: ")
    assert counts() == (0, 0, 0)


def test_a_lone_surrogate_reaching_ingestion_directly_is_refused_not_hashed(visit):
    event = msgspec.convert(item(anonymous_id="x"), EventCreateIn)
    event.event.anonymous_id = "anon-\ud800"

    result = ingestion.events_ingest_batch(items=[event])

    assert [(i.index, i.details) for i in result.invalid] == [
        (0, {"event.anonymous_id": ["anonymous_id contains a lone surrogate (not valid Unicode)."]})
    ]
    assert counts() == (0, 0, 0)


@pytest.fixture(params=["postgresql", "portable"])
def store_path(request, monkeypatch):
    """Run a test through the set-based PostgreSQL insert and through the portable ORM path."""
    if request.param == "portable":
        monkeypatch.setattr(ingest_store.connection, "vendor", "sqlite")
    return request.param


def test_both_store_paths_create_the_anonymous_customer_with_its_events(visit, store_path):
    items = [
        msgspec.convert(item("r-1", anonymous_id="anon-1"), EventCreateIn),
        msgspec.convert(item("r-2", anonymous_id="anon-1"), EventCreateIn),
    ]

    result = ingestion.events_ingest_batch(items=items)

    assert result.invalid == []
    customer = Customer.objects.get()
    assert (customer.external_id, customer.anonymous_id) == (None, "anon-1")
    assert [e.customer_id for e in result.stored] == [customer.pk, customer.pk]
    assert counts() == (2, 1, 2)


@pytest.mark.xdist_group("races")  # 50 connections each: one such race at a time
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_first_events_of_one_anonymous_id_create_one_customer(visit):
    # transaction=True: the threads' own connections see the committed event type.
    client, secret = api_client_create(name="anonymous-race")
    auth = basic_auth(client.name, secret)
    start = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def racer(n: int) -> None:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=auth)
        try:
            start.wait(timeout=30)
            response = post(api, item(f"r-{n}", anonymous_id="anon-race"))
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()  # each thread has its own connection; close it

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert Counter(statuses) == {201: THREADS}
    customer = Customer.objects.get()
    assert (customer.external_id, customer.anonymous_id) == (None, "anon-race")
    assert Event.objects.filter(customer=customer).count() == THREADS
    assert Event.objects.count() == THREADS


# transaction=True: outside a test transaction, as a request runs (inside one, creating a
# customer takes a savepoint around the INSERT).
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("customer", "known"),
    [
        ({"anonymous_id": "anon-new"}, False),
        ({"anonymous_id": "anon-1"}, True),
        ({"customer_external_id": "ext-new"}, False),
        ({"customer_external_id": "alice"}, True),
    ],
)
def test_a_single_post_by_anonymous_or_external_id_is_one_statement_three_if_new(
    api, visit, monkeypatch, customer, known
):
    # A known identifier (own or alias) is resolved by the one INSERT statement
    # (events_app.ingest_single). A new one: that statement stores nothing, then the
    # customer is created by the INSERT statement itself, which checks the suppression
    # list, after a statement taking the identifier's suppression lock
    # (customers.privacy.locks).
    CustomerFactory(external_id="alice", anonymous_id="anon-1")
    post(api, item("warm", anonymous_id="anon-1"))  # authenticates (then cached)
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    response = post(api, item(**customer))

    assert response.status_code == 201, response.json()
    assert len(sent) == (1 if known else 3)
    assert "customers_customeralias" in sent[0]
    assert "WITH current AS" in sent[0]
    if not known:
        assert "pg_advisory_xact_lock_shared" in sent[1]
        assert "customers_suppressedidentifier" in sent[2]
        assert sent[2].lstrip().startswith("WITH raw AS")
    assert Customer.objects.count() == (1 if known else 2)
