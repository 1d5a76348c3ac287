"""Anonymous customers (no external id, an anonymous id) and aliases in the customers API
and the customer admin."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, CustomerAlias
from tests.admin_support import marketer_client
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = "/admin/customers/customer/"


@pytest.fixture
def anonymous() -> Customer:
    return CustomerFactory(external_id=None, anonymous_id="anon-1", email="")


@pytest.fixture
def marketer() -> Client:
    return marketer_client(
        [
            "customers.view_customer",
            "customers.add_customer",
            "customers.change_customer",
            "events_app.view_event",
        ]
    )


# ---------------------------------------------------------------- the API


def test_the_customer_object_of_an_anonymous_customer(contract_api, anonymous):
    response = contract_api.get(f"{API}/customers/{anonymous.pk}")

    assert response.status_code == 200
    data = response.json()["data"]
    assert {k: data[k] for k in ("external_id", "anonymous_id", "is_anonymous", "aliases")} == {
        "external_id": None,
        "anonymous_id": "anon-1",
        "is_anonymous": True,
        "aliases": [],
    }
    assert list(data) == [
        "customer_id",
        "external_id",
        "anonymous_id",
        "is_anonymous",
        "aliases",
        "email",
        "attributes",
        "tags",
        "created_at",
        "updated_at",
    ]


def test_the_list_shows_anonymous_and_identified_customers_sorted_by_external_id(
    contract_api, anonymous
):
    CustomerFactory(external_id="alice")

    response = contract_api.get(
        f"{API}/customers", {"sort_field": "external_id", "sort_direction": "asc"}
    )

    assert response.status_code == 200
    listed = [(c["external_id"], c["is_anonymous"]) for c in response.json()["data"]["customers"]]
    assert listed == [("alice", False), (None, True)]  # PostgreSQL sorts NULL last
    assert response.json()["data"]["total_items"] == 2


def test_the_list_filters_by_anonymous_id_and_by_external_id(contract_api, anonymous):
    alice = CustomerFactory(external_id="alice", anonymous_id="anon-2")

    by_anonymous = contract_api.get(f"{API}/customers", {"anonymous_id": "anon-2"}).json()["data"]
    by_external = contract_api.get(f"{API}/customers", {"external_id": "alice"}).json()["data"]
    none = contract_api.get(f"{API}/customers", {"anonymous_id": "anon-9"}).json()["data"]

    assert [c["customer_id"] for c in by_anonymous["customers"]] == [alice.pk]
    assert [c["customer_id"] for c in by_external["customers"]] == [alice.pk]
    assert none == {"customers": [], "total_items": 0}


def test_the_list_reads_aliases_in_one_query_for_the_page(contract_api):
    for n in range(5):
        customer = CustomerFactory()
        CustomerAlias.objects.create(customer=customer, kind="external", value=f"old-{n}")
    contract_api.get(f"{API}/customers")  # authenticates (then cached)

    with CaptureQueriesContext(connection) as queries:
        response = contract_api.get(f"{API}/customers")

    alias_reads = [q for q in queries.captured_queries if "customers_customeralias" in q["sql"]]
    assert len(alias_reads) == 1

    assert sorted(a for c in response.json()["data"]["customers"] for a in c["aliases"]) == [
        f"old-{n}" for n in range(5)
    ]


@pytest.mark.parametrize(
    "fields",
    [{"external_id": None}, {"email": "a@example.com"}],
)
def test_creating_a_customer_still_requires_an_external_id(contract_api, fields):
    response = contract_api.post(f"{API}/customers", {"customer": fields}, format="json")

    assert response.status_code == 400
    assert "customer.external_id" in response.json()["details"]
    assert Customer.objects.count() == 0


def test_giving_an_anonymous_customer_an_external_id_identifies_them(contract_api, anonymous):
    response = contract_api.patch(
        f"{API}/customers/{anonymous.pk}", {"customer": {"external_id": "alice"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert (data["external_id"], data["anonymous_id"], data["is_anonymous"]) == (
        "alice",
        "anon-1",
        False,
    )


def test_an_external_id_cannot_be_set_to_null(contract_api):
    alice = CustomerFactory(external_id="alice")

    response = contract_api.patch(
        f"{API}/customers/{alice.pk}", {"customer": {"external_id": None}}, format="json"
    )

    assert response.status_code == 400
    assert Customer.objects.get().external_id == "alice"


def test_deleting_an_anonymous_customer_returns_it(contract_api, anonymous):
    response = contract_api.delete(f"{API}/customers/{anonymous.pk}")

    assert response.status_code == 200
    assert response.json()["data"]["anonymous_id"] == "anon-1"
    assert Customer.objects.count() == 0


# ---------------------------------------------------------------- the admin


def test_the_admin_list_names_anonymous_customers_by_their_anonymous_id(marketer, anonymous):
    CustomerFactory(external_id="alice")

    response = marketer.get(CUSTOMERS)

    assert response.status_code == 200
    assert "anonymous anon-1" in response.text
    assert "alice" in response.text


@pytest.mark.parametrize(("value", "expected"), [("yes", ["anon-1"]), ("no", ["alice"])])
def test_the_admin_list_filters_anonymous_or_identified_customers(
    marketer, anonymous, value, expected
):
    CustomerFactory(external_id="alice")

    response = marketer.get(CUSTOMERS, {"anonymous": value})

    listed = response.context["cl"].result_list
    assert [c.external_id or c.anonymous_id for c in listed] == expected


def test_the_admin_search_finds_an_anonymous_id_exactly(marketer, anonymous):
    CustomerFactory(external_id="anon-10")

    exact = marketer.get(CUSTOMERS, {"q": "anon-1"})

    assert sorted(str(c) for c in exact.context["cl"].result_list) == [
        "anon-10",
        "anonymous anon-1",
    ]


def test_the_admin_page_shows_the_anonymous_id_and_the_aliases_read_only(marketer, anonymous):
    CustomerAlias.objects.create(customer=anonymous, kind="external", value="crm-7")

    response = marketer.get(f"{CUSTOMERS}{anonymous.pk}/change/")

    assert response.status_code == 200
    text = response.text
    assert "anon-1" in text
    assert "crm-7" in text
    assert "<td>external</td><td>crm-7</td>" in text
    assert 'value="crm-7"' not in text  # shown, not an input


def test_saving_an_anonymous_customers_page_without_an_external_id_keeps_them_anonymous(
    marketer, anonymous
):
    response = marketer.post(
        f"{CUSTOMERS}{anonymous.pk}/change/",
        {
            "external_id": "",
            "email": "v@example.com",
            "tags": "",
            "attributes-key-0": "",
            "attributes-type-0": "text",
            "attributes-value-0": "",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    anonymous.refresh_from_db()
    assert (anonymous.external_id, anonymous.anonymous_id, anonymous.email) == (
        None,
        "anon-1",
        "v@example.com",
    )


def test_the_admin_add_page_still_requires_an_external_id(marketer):
    response = marketer.post(
        f"{CUSTOMERS}add/",
        {
            "external_id": "",
            "email": "",
            "attributes-key-0": "",
            "attributes-type-0": "text",
            "attributes-value-0": "",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["external_id"] == ["This field is required."]
    assert Customer.objects.count() == 0


def test_the_events_export_names_an_anonymous_customer_by_their_anonymous_id(anonymous):
    EventFactory(customer=anonymous)
    staff = marketer_client(["events_app.view_event"])

    response = staff.get("/admin/events_app/event/export.csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["customer__external_id"], r["customer__anonymous_id"]) for r in rows] == [
        ("", "anon-1")
    ]


def test_the_event_list_names_an_anonymous_customer(anonymous):
    event = EventFactory(customer=anonymous)
    staff = marketer_client(["events_app.view_event", "customers.view_customer"])

    listed = staff.get("/admin/events_app/event/")
    page = staff.get(f"/admin/events_app/event/{event.pk}/change/")
    filtered = staff.get("/admin/events_app/event/", {"customer": anonymous.pk})

    assert "anonymous anon-1" in listed.text
    assert "anonymous anon-1" in page.text
    assert "anonymous anon-1" in filtered.text


def test_the_admin_list_sorts_by_the_customer_column(marketer, anonymous):
    # `o` indexes list_display (no action column here: the list has no bulk actions).
    CustomerFactory(external_id="bob")
    CustomerFactory(external_id="alice")

    response = marketer.get(CUSTOMERS, {"o": "0"})

    assert [str(c) for c in response.context["cl"].result_list] == [
        "alice",
        "bob",
        "anonymous anon-1",
    ]
    descending = marketer.get(CUSTOMERS, {"o": "-0"})
    assert [str(c) for c in descending.context["cl"].result_list][-2:] == ["bob", "alice"]
