"""Events naming an external-id alias land on the customer it resolves to; refs stay
unique per event type whichever identifier an event names its customer by."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from rest_framework.test import APIClient

from customers.models import Customer, CustomerAlias
from events_app import ingest_store, ingestion
from events_app.models import Event
from events_app.schemas import EventCreateIn
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def visit():
    return EventTypeFactory(key="visit")


@pytest.fixture
def alice() -> Customer:
    customer = CustomerFactory(external_id="alice")
    CustomerAlias.objects.create(customer=customer, kind="external", value="alice-crm")
    CustomerAlias.objects.create(customer=customer, kind="external", value="alice-shop")
    return customer


def item(ref: str | None = None, **customer: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event": {"event_type": "visit", **customer}}
    if ref is not None:
        body["event"]["external_id"] = ref
    return body


def post(api: APIClient, body: Any) -> Any:
    return api.post(f"{API}/events", body, format="json")


def post_batch(api: APIClient, items: list[Any]) -> Any:
    return api.post(f"{API}/events/batch", {"events": items}, format="json")


def test_single_event_naming_an_alias_lands_on_its_customer(api, visit, alice):
    response = post(api, item("r-1", customer_external_id="alice-crm"))

    assert response.status_code == 201, response.json()
    assert Event.objects.get().customer_id == alice.pk
    assert Customer.objects.count() == 1


def test_batch_events_naming_the_customer_or_its_aliases_all_land_on_it(api, visit, alice):
    items = [
        item("r-1", customer_external_id="alice"),
        item("r-2", customer_external_id="alice-crm"),
        item("r-3", customer_external_id="alice-shop"),
        item("r-4", customer_id=alice.pk),
    ]

    response = post_batch(api, items)

    data = response.json()["data"]
    assert data["invalid_events"] == []
    assert [(e["index"], e["customer_id"]) for e in data["valid_events"]] == [
        (0, alice.pk),
        (1, alice.pk),
        (2, alice.pk),
        (3, alice.pk),
    ]
    assert Customer.objects.count() == 1


def test_a_ref_stays_unique_per_event_type_across_a_customers_aliases(api, visit, alice):
    stored = post(api, item("order-1", customer_external_id="alice")).json()["data"]["event_id"]

    single = post(api, item("order-1", customer_external_id="alice-crm"))
    batch = post_batch(api, [item("order-1", customer_external_id="alice-shop")])

    assert single.status_code == 409
    assert single.json()["event_id"] == stored
    invalid = batch.json()["data"]["invalid_events"]
    assert [(i["index"], i["error"], i["event_id"]) for i in invalid] == [
        (0, "Event ref already exists.", stored)
    ]
    assert Event.objects.count() == 1


def test_a_customers_own_external_id_wins_over_another_customers_alias(api, visit, alice):
    owner = CustomerFactory(external_id="alice-crm")

    response = post(api, item(customer_external_id="alice-crm"))

    assert response.status_code == 201, response.json()
    assert Event.objects.get().customer_id == owner.pk


def test_an_anonymous_alias_is_not_an_external_id(api, visit, alice):
    CustomerAlias.objects.create(customer=alice, kind="anonymous", value="visitor-9")

    response = post(api, item(customer_external_id="visitor-9"))

    assert response.status_code == 201, response.json()
    created = Customer.objects.get(external_id="visitor-9")
    assert Event.objects.get().customer_id == created.pk != alice.pk


@pytest.fixture(params=["postgresql", "portable"])
def store_path(request, monkeypatch):
    if request.param == "portable":
        monkeypatch.setattr(ingest_store.connection, "vendor", "sqlite")
    return request.param


def test_both_store_paths_store_alias_events_on_the_customer(visit, alice, store_path):
    items = [msgspec.convert(item("r-1", customer_external_id="alice-shop"), EventCreateIn)]

    result = ingestion.events_ingest_batch(items=items)

    assert [(e.customer_id, e.new_customer) for e in result.stored] == [(alice.pk, None)]
    assert Customer.objects.count() == 1


def test_the_customer_object_lists_its_external_aliases_sorted(api, alice):
    CustomerAlias.objects.create(customer=alice, kind="external", value="a-first")
    CustomerAlias.objects.create(customer=alice, kind="anonymous", value="visitor-1")

    detail = api.get(f"{API}/customers/{alice.pk}").json()["data"]
    listed = api.get(f"{API}/customers").json()["data"]["customers"]

    assert detail["aliases"] == ["a-first", "alice-crm", "alice-shop"]
    assert (detail["external_id"], detail["is_anonymous"], detail["anonymous_id"]) == (
        "alice",
        False,
        None,
    )
    assert [c["aliases"] for c in listed] == [["a-first", "alice-crm", "alice-shop"]]
