"""Contract of /customers: create, list with filters, get, PATCH, delete, the customer's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.workflows.models import WorkflowRun
from customers.models import Customer
from events_app.models import Event, PropertyRecord
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _row(customer_id: str) -> tuple:
    return Customer.objects.filter(pk=customer_id).values_list(
        "external_id", "email", "attributes", "tags"
    )[0]


# ---------------------------------------------------------------- create


def test_created_customer_is_stored(contract_api):
    response = contract_api.post(
        f"{API}/customers",
        {
            "customer": {
                "external_id": "157613",
                "email": "jan@example.com",
                "attributes": {"country": "CZ", "vip": True, "orders": 3},
                "tags": ["newsletter", "vip", "newsletter"],
            }
        },
        format="json",
    )

    assert response.status_code == 201
    customer_id = response.json()["data"]["customer_id"]
    assert response.json() == {"data": {"customer_id": customer_id}}
    assert _row(customer_id) == (
        "157613",
        "jan@example.com",
        {"country": "CZ", "vip": True, "orders": 3},
        ["newsletter", "vip"],
    )


def test_only_external_id_is_required(contract_api):
    response = contract_api.post(
        f"{API}/customers", {"customer": {"external_id": "x"}}, format="json"
    )

    assert response.status_code == 201
    assert _row(response.json()["data"]["customer_id"]) == ("x", "", {}, [])


def test_taken_external_id_is_409_naming_the_customer(contract_api):
    existing = CustomerFactory(external_id="157613")

    response = contract_api.post(
        f"{API}/customers", {"customer": {"external_id": "157613"}}, format="json"
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": "A customer with this external_id already exists.",
        "statusCode": 409,
        "customer_id": existing.id,
    }
    assert Customer.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"customer": ["This field is required."]}),
        (
            {"external_id": "1"},
            {"customer": ["This field is required."], "external_id": ["Unknown field."]},
        ),
        ({"customer": {}}, {"customer.external_id": ["This field is required."]}),
        (
            {"customer": {"external_id": "1", "emial": "a@b.cz"}},
            {"customer.emial": ["Unknown field."]},
        ),
        (
            {"customer": {"external_id": "1", "email": "not-an-address"}},
            {"customer.email": ["Enter a valid email address."]},
        ),
        (
            {"customer": {"external_id": "1", "attributes": '{"country": "CZ"}'}},
            {"customer.attributes": ['Expected a dictionary of items but got type "str".']},
        ),
        (
            {"customer": {"external_id": "1", "attributes": [1]}},
            {"customer.attributes": ['Expected a dictionary of items but got type "list".']},
        ),
        (
            {"customer": {"external_id": "1", "tags": "vip"}},
            {"customer.tags": ['Expected a list of items but got type "str".']},
        ),
        (
            {"customer": {"external_id": "1", "tags": ["ok", "x" * 101]}},
            {"customer.tags[1]": ["Ensure this field has no more than 100 characters."]},
        ),
        (
            {"customer": {"external_id": ""}},
            {"customer.external_id": ["This field may not be blank."]},
        ),
        (
            {"customer": {"external_id": 157613}},
            {"customer.external_id": ["Not a valid string."]},
        ),
    ],
)
def test_invalid_create_body_is_400_naming_fields_and_creates_nothing(contract_api, body, details):
    response = contract_api.post(f"{API}/customers", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == details
    assert Customer.objects.count() == 0


# ---------------------------------------------------------------- list / get


def test_list_is_newest_first_with_total(contract_api):
    with time_machine.travel(T0, tick=False):
        old = CustomerFactory()
    with time_machine.travel(T0 + timedelta(seconds=1), tick=False):
        new = CustomerFactory()

    response = contract_api.get(f"{API}/customers")

    assert response.status_code == 200
    data = response.json()["data"]
    assert [c["customer_id"] for c in data["customers"]] == [new.id, old.id]
    assert data["total_items"] == 2


def test_list_pages_never_repeat_when_created_at_ties(contract_api):
    with time_machine.travel(T0, tick=False):
        ids = [CustomerFactory().id for _ in range(5)]

    seen = []
    for offset in range(0, 5, 2):
        page = contract_api.get(
            f"{API}/customers", {"count": 2, "offset": offset, "sort_direction": "Asc"}
        )
        seen += [c["customer_id"] for c in page.json()["data"]["customers"]]

    assert seen == sorted(ids)


def test_list_filters_by_external_id_email_and_created_range(contract_api):
    customers = []
    for hour in range(3):
        with time_machine.travel(T0 + timedelta(hours=hour), tick=False):
            customers.append(CustomerFactory(external_id=f"c{hour}", email=f"c{hour}@example.com"))

    def ids(**query):
        response = contract_api.get(f"{API}/customers", query)
        assert response.status_code == 200
        return [c["customer_id"] for c in response.json()["data"]["customers"]]

    assert ids(external_id="c1") == [customers[1].id]
    assert ids(email="c2@example.com") == [customers[2].id]
    assert ids(created_after="2024-05-01T13:00:00Z") == [customers[2].id, customers[1].id]
    assert ids(created_before="2024-05-01T13:00:00Z") == [customers[0].id]
    assert ids(updated_after="2024-05-01T14:00:00Z") == [customers[2].id]
    assert ids(external_id="nobody") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"sort_field": "attributes"}, "Unknown sort_field 'attributes'."),
        ({"count": "1001"}, "Query parameter 'count' must be between 1 and 1000."),
        ({"count": "x"}, "Query parameter 'count' must be an integer."),
        ({"offset": "-1"}, "Query parameter 'offset' must be at least 0."),
        ({"sort_direction": "down"}, "sort_direction must be ASC or DESC."),
        ({"externalid": "1"}, "Unknown query parameter(s): externalid."),
        (
            {"created_after": "2024-13-01"},
            "Invalid query parameter 'created_after': Enter a valid date/time.",
        ),
    ],
)
def test_bad_list_parameter_is_400(contract_api, query, message):
    response = contract_api.get(f"{API}/customers", query)

    assert response.status_code == 400
    assert response.json()["message"] == message


def test_customer_is_returned_in_full(contract_api):
    with time_machine.travel(T0, tick=False):
        customer = CustomerFactory(
            external_id="157613", email="", attributes={"a": [1, 2]}, tags=["vip"]
        )

    response = contract_api.get(f"{API}/customers/{customer.id}")

    assert response.json() == {
        "data": {
            "customer_id": customer.id,
            "external_id": "157613",
            "anonymous_id": None,
            "is_anonymous": False,
            "aliases": [],
            "email": "",
            "attributes": {"a": [1, 2]},
            "tags": ["vip"],
            "created_at": "2024-05-01T12:00:00Z",
            "updated_at": "2024-05-01T12:00:00Z",
        }
    }


@pytest.mark.parametrize(
    ("method", "suffix"), [("get", ""), ("patch", ""), ("delete", ""), ("get", "/events")]
)
def test_unknown_customer_id_is_404(contract_api, method, suffix):
    # A body only where one is read: on a GET the test client sends it as query parameters.
    body = {"customer": {"email": ""}} if method == "patch" else None
    response = getattr(contract_api, method)(f"{API}/customers/nope{suffix}", body, format="json")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "Customer 'nope' not found.",
        "statusCode": 404,
    }


# ---------------------------------------------------------------- PATCH


def test_patch_changes_only_the_given_fields_and_replaces_attributes(contract_api):
    customer = CustomerFactory(
        external_id="157613", email="a@example.com", attributes={"a": 1, "b": 2}, tags=["x"]
    )

    response = contract_api.patch(
        f"{API}/customers/{customer.id}",
        {"customer": {"attributes": {"b": 3}, "tags": ["y", "y", "z"]}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["data"]["attributes"] == {"b": 3}
    assert _row(customer.id) == ("157613", "a@example.com", {"b": 3}, ["y", "z"])


def test_patch_can_clear_the_email(contract_api):
    customer = CustomerFactory(email="a@example.com")

    response = contract_api.patch(
        f"{API}/customers/{customer.id}", {"customer": {"email": ""}}, format="json"
    )

    assert response.status_code == 200
    assert _row(customer.id)[1] == ""


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"customer": ["This field is required."]}),
        ({"customer": {}}, {"customer": ["Give at least one field to change."]}),
        ({"customer": {"emial": "b@example.com"}}, {"customer.emial": ["Unknown field."]}),
        (
            {"email": "b@example.com"},
            {"customer": ["This field is required."], "email": ["Unknown field."]},
        ),
        (
            {"customer": {"attributes": "{}"}},
            {"customer.attributes": ['Expected a dictionary of items but got type "str".']},
        ),
        (
            {"customer": {"external_id": None}},
            {"customer.external_id": ["This field may not be null."]},
        ),
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(contract_api, body, details):
    customer = CustomerFactory(external_id="157613", email="a@example.com")
    before = _row(customer.id)

    response = contract_api.patch(f"{API}/customers/{customer.id}", body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == details
    assert _row(customer.id) == before


def test_patch_to_a_taken_external_id_is_409(contract_api):
    other = CustomerFactory(external_id="taken")
    customer = CustomerFactory(external_id="mine")

    response = contract_api.patch(
        f"{API}/customers/{customer.id}", {"customer": {"external_id": "taken"}}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["customer_id"] == other.id
    assert _row(customer.id)[0] == "mine"


# ---------------------------------------------------------------- DELETE


def test_delete_returns_the_customer_and_erases_everything_of_theirs(
    contract_api, customer_history
):
    customer = customer_history("alice", 2)
    kept = customer_history("bob", 1)
    before = contract_api.get(f"{API}/customers/{customer.id}").json()

    response = contract_api.delete(f"{API}/customers/{customer.id}")

    assert response.status_code == 200
    assert response.json() == before
    assert list(Customer.objects.values_list("id", flat=True)) == [kept.id]
    assert set(Event.objects.values_list("customer_id", flat=True)) == {kept.id}
    assert [
        model.objects.count() for model in (PropertyRecord, Delivery, DeliveryAttempt, WorkflowRun)
    ] == [2, 3, 3, 1]  # her deliveries stay as redacted rows (automation.privacy)
    assert contract_api.get(f"{API}/events").json()["data"]["total_items"] == 1


# ---------------------------------------------------------------- /customers/{id}/events


def test_customer_events_use_the_events_envelope_and_filters(contract_api):
    customer = CustomerFactory()
    first = EventFactory(customer=customer, created_at=T0)
    second = EventFactory(customer=customer, created_at=T0 + timedelta(seconds=1))
    EventFactory(created_at=T0)  # someone else's

    everything = contract_api.get(f"{API}/customers/{customer.id}/events")
    of_type = contract_api.get(
        f"{API}/customers/{customer.id}/events",
        {"event_type_id": first.event_type_id, "count": 1},
    )

    assert everything.status_code == 200
    assert [e["event_id"] for e in everything.json()["data"]["events"]] == [second.id, first.id]
    assert everything.json()["data"]["total_items"] == 2
    assert (
        everything.json()["data"]["events"][1]
        == (contract_api.get(f"{API}/events/{first.id}").json()["data"])
    )
    assert of_type.json() == {
        "data": {
            "events": [contract_api.get(f"{API}/events/{first.id}").json()["data"]],
            "total_items": 1,
        }
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"count": "0"}, "Query parameter 'count' must be between 1 and 1000."),
        ({"sort_field": "customer_id"}, "Unknown sort_field 'customer_id'."),
        ({"evnt_type_id": "x"}, "Unknown query parameter(s): evnt_type_id."),
    ],
)
def test_customer_events_reject_bad_parameters(contract_api, query, message):
    customer = CustomerFactory()

    response = contract_api.get(f"{API}/customers/{customer.id}/events", query)

    assert response.status_code == 400
    assert response.json()["message"] == message
