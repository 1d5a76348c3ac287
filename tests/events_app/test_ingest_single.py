"""The one-statement single POST (events_app.ingest_single) answers as the general path.

It judges an event against the type and definitions this process kept from an earlier
request; "another process" changing them is simulated by writing rows directly (no
service call, so nothing in this process is told): the next event must still be
judged by the new definitions, and store nothing when they refuse it.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from customers.models import Customer, CustomerAlias
from events_app import ingestion
from events_app.models import Event, PropertyDefinition, PropertyRecord
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

ROWS = ("event_type_id", "customer_id", "data", "is_delivered", "automation_pending", "state")


@pytest.fixture
def visit() -> Any:
    visit = EventTypeFactory(key="visit")
    PropertyDefinitionFactory(event_type=visit, property_id="page", value_type="string")
    return visit


def post(
    api: APIClient, ref: str, records: list[dict[str, Any]] | None = None, **event: Any
) -> Any:
    body = {
        "event": {"event_type": "visit", "external_id": ref, **event},
        "property_records": [{"property_id": "page", "property_value": "/"}]
        if records is None
        else records,
    }
    return api.post(f"{API}/events", body, format="json")


def test_a_property_made_required_elsewhere_refuses_the_next_event(api, visit) -> None:
    customer = CustomerFactory()
    assert post(api, "r1", customer_id=customer.pk).status_code == 201
    PropertyDefinition.objects.create(
        event_type=visit, property_id="plan", name="plan", value_type="string", required=True
    )

    response = post(api, "r2", customer_id=customer.pk)

    assert response.status_code == 400
    assert response.json()["details"] == {
        "property_records": ["Required property 'plan' is missing."]
    }
    assert Event.objects.count() == 1
    # Judged by the new definitions from then on: the property given, the event is stored.
    records = [
        {"property_id": "page", "property_value": "/"},
        {"property_id": "plan", "property_value": "pro"},
    ]
    assert post(api, "r3", records, customer_id=customer.pk).status_code == 201


def test_a_property_removed_elsewhere_is_unknown_to_the_next_event(api, visit) -> None:
    customer = CustomerFactory()
    assert post(api, "r1", customer_id=customer.pk).status_code == 201
    PropertyDefinition.objects.filter(event_type=visit, property_id="page").delete()

    response = post(api, "r2", customer_id=customer.pk)

    assert response.status_code == 400
    assert "Unknown property 'page'" in response.json()["message"]
    assert (Event.objects.count(), PropertyRecord.objects.count()) == (1, 1)


def test_a_known_ref_is_a_409_naming_the_stored_event(api, visit) -> None:
    customer = CustomerFactory()
    first = post(api, "r1", customer_id=customer.pk).json()["data"]["event_id"]

    response = post(api, "r1", customer_id=customer.pk)

    assert response.status_code == 409
    assert response.json()["event_id"] == first
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    "named",
    [
        {"customer_external_id": "alice"},
        {"customer_external_id": "alias-of-alice"},
        {"anonymous_id": "anon-alice"},
        {"anonymous_id": "anon-alias"},
    ],
)
def test_an_identifier_resolves_to_the_customer_as_on_the_general_path(
    api, visit, monkeypatch, named
) -> None:
    alice = CustomerFactory(external_id="alice", anonymous_id="anon-alice")
    CustomerAlias.objects.create(customer=alice, kind="external", value="alias-of-alice")
    CustomerAlias.objects.create(customer=alice, kind="anonymous", value="anon-alias")
    assert post(api, "warm", customer_id=alice.pk).status_code == 201
    one_statement = post(api, "r1", **named).json()["data"]["event_id"]
    monkeypatch.setattr(ingestion, "kept_references", lambda event: None)
    general = post(api, "r2", **named).json()["data"]["event_id"]

    stored = {e.pk: e for e in Event.objects.all()}
    fast, slow = stored[one_statement], stored[general]
    assert [getattr(fast, c) for c in ROWS] == [getattr(slow, c) for c in ROWS]
    assert fast.customer_id == alice.pk
    assert list(
        PropertyRecord.objects.filter(event_id=fast.pk).values_list("property_id", "property_value")
    ) == [("page", "/")]
    assert Customer.objects.count() == 1


def test_a_new_identifier_creates_its_customer_with_the_event(api, visit) -> None:
    customer = CustomerFactory()
    assert post(api, "warm", customer_id=customer.pk).status_code == 201

    event_id = post(api, "r1", customer_external_id="new-person").json()["data"]["event_id"]

    created = Customer.objects.get(external_id="new-person")
    assert Event.objects.get(pk=event_id).customer_id == created.pk


def test_an_unknown_customer_id_is_a_400_and_stores_nothing(api, visit) -> None:
    customer = CustomerFactory()
    assert post(api, "warm", customer_id=customer.pk).status_code == 201

    response = post(api, "r1", customer_id="no-such-customer")

    assert response.status_code == 400
    assert response.json()["details"] == {
        "event.customer_id": ["Unknown customer 'no-such-customer'."]
    }
    assert Event.objects.count() == 1
