"""A suppressed identifier never comes back through ingest: single and batch, by external
id, anonymous id or alias; the refusal writes nothing."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from customers.models import Customer, CustomerAlias, SuppressedIdentifier
from customers.privacy.hashing import IdentifierKind, identifier_digest
from events_app import ingest_references, ingest_store, ingestion
from events_app.models import Event, PropertyRecord
from events_app.schemas import EventCreateIn
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

SUPPRESSED = "customer is suppressed"


@pytest.fixture
def visit():
    event_type = EventTypeFactory(key="visit")
    PropertyDefinitionFactory(event_type=event_type, property_id="page")
    return event_type


def suppress(kind: IdentifierKind, value: str) -> None:
    """What a suppression leaves behind: the keyed hash, and no customer."""
    SuppressedIdentifier.objects.create(kind=kind, digest=identifier_digest(kind, value))


def item(ref: str | None = None, **customer: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": {"event_type": "visit", **customer},
        "property_records": [{"property_id": "page", "property_value": "/"}],
    }
    if ref is not None:
        body["event"]["external_id"] = ref
    return body


def post(api: APIClient, body: Any) -> Any:
    return api.post(f"{API}/events", body, format="json")


def post_batch(api: APIClient, items: list[Any]) -> Any:
    return api.post(f"{API}/events/batch", {"events": items}, format="json")


def counts() -> tuple[int, int, int, int]:
    return (
        Event.objects.count(),
        Customer.objects.count(),
        PropertyRecord.objects.count(),
        CustomerAlias.objects.count(),
    )


@pytest.mark.parametrize(
    ("kind", "customer", "field"),
    [
        ("external_id", {"customer_external_id": "gone"}, "event.customer_external_id"),
        ("anonymous_id", {"anonymous_id": "gone"}, "event.anonymous_id"),
    ],
)
def test_single_post_naming_a_suppressed_identifier_is_403_and_writes_nothing(
    contract_api, visit, kind, customer, field
):
    suppress(kind, "gone")

    response = post(contract_api, item("r-1", **customer))

    assert response.status_code == 403
    assert response.json() == {
        "error": "Forbidden",
        "message": SUPPRESSED,
        "statusCode": 403,
        "details": {field: [SUPPRESSED]},
    }
    assert counts() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kind", "customer", "field"),
    [
        ("external_id", {"customer_external_id": "gone"}, "event.customer_external_id"),
        ("anonymous_id", {"anonymous_id": "gone"}, "event.anonymous_id"),
    ],
)
def test_batch_items_naming_a_suppressed_identifier_are_invalid_and_the_rest_stored(
    api, visit, kind, customer, field
):
    suppress(kind, "gone")
    items = [
        item("r-1", **customer),
        item("r-2", customer_external_id="kept"),
        item("r-3", **customer),
    ]

    response = post_batch(api, items)

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["invalid_events"] == [
        {"index": 0, "event": items[0], "error": SUPPRESSED, "details": {field: [SUPPRESSED]}},
        {"index": 2, "event": items[2], "error": SUPPRESSED, "details": {field: [SUPPRESSED]}},
    ]
    kept = Customer.objects.get()
    assert kept.external_id == "kept"
    assert [(e["index"], e["customer_id"]) for e in data["valid_events"]] == [(1, kept.pk)]
    assert counts() == (1, 1, 1, 0)


def test_suppression_is_per_kind_an_equal_value_of_the_other_kind_is_another_person(api, visit):
    suppress("external_id", "same")

    response = post(api, item(anonymous_id="same"))

    assert response.status_code == 201, response.json()
    assert list(Customer.objects.values_list("external_id", "anonymous_id")) == [(None, "same")]


def test_a_suppressed_former_alias_cannot_come_back(api, visit):
    # The person had "old-id" as an alias; suppressing them deleted the customer with
    # its aliases and listed every identifier.
    suppress("external_id", "old-id")
    suppress("anonymous_id", "old-visitor")

    single = post(api, item(customer_external_id="old-id"))
    batch = post_batch(api, [item(anonymous_id="old-visitor"), item(customer_external_id="old-id")])

    assert single.status_code == 403
    assert [(i["index"], i["error"]) for i in batch.json()["data"]["invalid_events"]] == [
        (0, SUPPRESSED),
        (1, SUPPRESSED),
    ]
    assert counts() == (0, 0, 0, 0)


def test_a_customer_that_exists_receives_events_although_another_identifier_is_suppressed(
    api, visit
):
    customer = CustomerFactory(external_id="alice")
    suppress("external_id", "bob")

    response = post_batch(api, [item(customer_external_id="alice"), item(customer_id=customer.pk)])

    assert [e["customer_id"] for e in response.json()["data"]["valid_events"]] == [
        customer.pk,
        customer.pk,
    ]
    assert response.json()["data"]["invalid_events"] == []


def test_a_suppressed_identifiers_refusal_comes_before_its_ref_conflict(api, visit):
    stored = post(api, item("r-1", customer_external_id="alice"))
    suppress("external_id", "gone")

    response = post(api, item("r-1", customer_external_id="gone"))

    assert stored.status_code == 201
    assert response.status_code == 403
    assert Event.objects.count() == 1
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["alice"]


def statements_of(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement psycopg sends from now on (savepoints left out)."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        if "SAVEPOINT" not in str(query):
            sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    return sent


def test_the_suppression_list_is_read_by_a_statement_and_no_orm_query(api, visit, monkeypatch):
    suppress("anonymous_id", "gone")
    post(api, item(customer_external_id="warm"))  # authenticates (then cached)
    sent = statements_of(monkeypatch)
    with CaptureQueriesContext(connection) as orm:
        response = post(api, item(anonymous_id="gone"))

    assert response.status_code == 403
    assert [q for q in sent if "customers_suppressedidentifier" in q]
    assert not [q for q in orm.captured_queries if "suppressed" in q["sql"]]
    assert Event.objects.count() == 1


def test_an_event_by_customer_id_reads_neither_aliases_nor_the_suppression_list(
    api, visit, monkeypatch
):
    customer = CustomerFactory()
    sent = statements_of(monkeypatch)
    fetch_all = ingest_references.fetch_all
    general: list[str] = []

    def counting(sql: str, params: Any) -> Any:
        general.append(sql)
        return fetch_all(sql, params)

    monkeypatch.setattr(ingest_references, "fetch_all", counting)
    response = post(api, item(customer_id=customer.pk))

    assert response.status_code == 201
    # Taken by the one-statement path (events_app.ingest_single): its customer is probed
    # by id, the CASE branch of a customer id (the alias probes are other branches).
    assert general == []
    assert not [q for q in sent if "customers_suppressedidentifier" in q]
    assert "WHEN 'id' THEN" in sent[-1]


@pytest.fixture(params=["postgresql", "portable"])
def store_path(request, monkeypatch):
    if request.param == "portable":
        monkeypatch.setattr(ingest_store.connection, "vendor", "sqlite")
    return request.param


def test_both_store_paths_refuse_suppressed_identifiers(visit, store_path):
    suppress("external_id", "gone")
    suppress("anonymous_id", "gone-visitor")
    items = [
        msgspec.convert(item(customer_external_id="gone"), EventCreateIn),
        msgspec.convert(item(anonymous_id="gone-visitor"), EventCreateIn),
        msgspec.convert(item(anonymous_id="fresh"), EventCreateIn),
    ]

    result = ingestion.events_ingest_batch(items=items)

    assert [(i.index, i.error) for i in result.invalid] == [(0, SUPPRESSED), (1, SUPPRESSED)]
    assert [e.index for e in result.stored] == [2]
    assert list(Customer.objects.values_list("anonymous_id", flat=True)) == ["fresh"]
