"""Customer admin: prefix search, the tag filter, a link to the customer's events, and
attributes edited as typed key / value rows."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.workflows.models import WorkflowRun
from customers.models import Customer
from events_app.models import Event, PropertyRecord
from tests.admin_support import (
    get_with_queries,
    marketer_client,
    treat_as_big_table,
    uncapped_counts,
)
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = "/admin/customers/customer/"


@pytest.fixture
def marketer() -> Client:
    return marketer_client(
        [
            "customers.view_customer",
            "customers.add_customer",
            "customers.change_customer",
            "customers.delete_customer",
            "events_app.view_event",
        ]
    )


def result_ids(response) -> list[str]:
    return [obj.pk for obj in response.context["cl"].result_list]


def attribute_rows(*rows: tuple[str, str, str]) -> dict[str, str]:
    """The key / type / value inputs of the attributes editor, as a browser posts them."""
    posted = {}
    for index, (key, kind, value) in enumerate([*rows, ("", "text", "")]):
        posted |= {
            f"attributes-key-{index}": key,
            f"attributes-type-{index}": kind,
            f"attributes-value-{index}": value,
        }
    return posted


def customer_post(attributes: dict[str, str] | None = None, **fields: str) -> dict[str, str]:
    return {"external_id": "157613", "email": "", **(attributes or attribute_rows()), **fields}


def test_customer_changelist_change_and_add_pages_render_for_staff(marketer):
    customer = CustomerFactory(tags=["vip", "newsletter"])

    pages = [CUSTOMERS, f"{CUSTOMERS}{customer.pk}/change/", f"{CUSTOMERS}add/"]
    responses = {page: marketer.get(page) for page in pages}

    assert {page: r.status_code for page, r in responses.items()} == dict.fromkeys(pages, 200)
    assert "newsletter" in responses[CUSTOMERS].text


@pytest.mark.parametrize("term", ["alice", "ALICE-1", "Alice@Ex", "alice@example.com"])
def test_customer_search_finds_the_start_of_an_external_id_or_email_in_any_case(marketer, term):
    alice = CustomerFactory(external_id="alice-1", email="alice@example.com")
    CustomerFactory(external_id="bob-1", email="bob@example.com")

    response = marketer.get(CUSTOMERS, {"q": term})

    assert result_ids(response) == [alice.pk]


def test_customer_search_finds_a_customer_by_id(marketer):
    alice = CustomerFactory(external_id="alice-1")

    response = marketer.get(CUSTOMERS, {"q": alice.pk})

    assert result_ids(response) == [alice.pk]


@pytest.mark.parametrize("term", ["lice", "example.com", "%", "_lice"])
def test_customer_search_does_not_match_inside_a_value(marketer, term):
    CustomerFactory(external_id="alice-1", email="alice@example.com")

    response = marketer.get(CUSTOMERS, {"q": term})

    assert result_ids(response) == []


def test_customer_list_filters_by_tag_and_each_tag_links_to_that_filter(marketer):
    vip = CustomerFactory(external_id="vip-1", tags=["vip", "newsletter"])
    CustomerFactory(external_id="plain-1", tags=["newsletter"])
    CustomerFactory(external_id="almost-1", tags=["VIP", "vip-ish"])

    listing = marketer.get(CUSTOMERS)
    filtered = marketer.get(CUSTOMERS, {"tag": "vip"})

    assert 'href="/admin/customers/customer/?tag=vip"' in listing.text
    assert result_ids(filtered) == [vip.pk]
    assert 'name="tag"' in filtered.text


def test_customer_links_to_a_list_of_only_their_events(marketer):
    customer = CustomerFactory()
    mine = [EventFactory(customer=customer) for _ in range(2)]
    EventFactory()

    page = marketer.get(f"{CUSTOMERS}{customer.pk}/change/")
    link = f"/admin/events_app/event/?customer={customer.pk}"
    events = marketer.get(link)

    assert f'href="{link}"' in page.text
    assert sorted(e.pk for e in events.context["cl"].result_list) == sorted(e.pk for e in mine)


def test_customer_attributes_are_shown_as_typed_key_value_rows(marketer):
    customer = CustomerFactory(
        attributes={"country": "CZ", "visits": 3, "vip": True, "plan": {"tier": "gold"}}
    )

    response = marketer.get(f"{CUSTOMERS}{customer.pk}/change/")

    rows = response.context["adminform"].form["attributes"].field.widget.rows(customer.attributes)
    assert rows == [
        ("country", "text", "CZ"),
        ("plan", "json", '{"tier": "gold"}'),
        ("vip", "boolean", "true"),
        ("visits", "number", "3"),
    ]
    assert 'name="attributes-key-0" value="country"' in response.text
    assert "herald/keyvalue.js" in response.text
    assert '<textarea name="attributes-value-1"' in response.text


def test_customer_edit_saves_changed_fields(marketer):
    customer = CustomerFactory(external_id="157613", email="old@example.com")

    response = marketer.post(
        f"{CUSTOMERS}{customer.pk}/change/",
        customer_post(email="new@example.com", attributes=attribute_rows(("plan", "text", "gold"))),
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.email, customer.attributes) == ("new@example.com", {"plan": "gold"})


def test_customer_attribute_rows_keep_their_types_and_a_cleared_key_removes_its_row(marketer):
    customer = CustomerFactory(external_id="157613", attributes={"old": "x", "plan": "free"})

    response = marketer.post(
        f"{CUSTOMERS}{customer.pk}/change/",
        customer_post(
            attributes=attribute_rows(
                ("", "text", "x"),
                ("plan", "text", "gold"),
                ("visits", "number", "12"),
                ("score", "number", "-0.5"),
                ("vip", "boolean", "TRUE"),
                ("zip", "text", "00123"),
                ("orders", "json", '[1, {"sku": "a"}]'),
            )
        ),
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.attributes == {
        "plan": "gold",
        "visits": 12,
        "score": -0.5,
        "vip": True,
        "zip": "00123",
        "orders": [1, {"sku": "a"}],
    }


def test_view_only_staff_read_attributes_as_a_table_and_tags_as_links(db):
    viewer = marketer_client(["customers.view_customer"], username="viewer")
    customer = CustomerFactory(attributes={"country": "CZ", "vip": True}, tags=["vip"])

    response = viewer.get(f"{CUSTOMERS}{customer.pk}/change/")

    assert '<table class="herald-attributes">' in response.text
    assert '<tr><th scope="row">country</th><td>CZ</td></tr>' in response.text
    assert '<tr><th scope="row">vip</th><td>true</td></tr>' in response.text
    assert 'href="/admin/customers/customer/?tag=vip"' in response.text
    assert "attributes-key-0" not in response.text


def test_customer_tags_are_edited_as_a_comma_separated_line(marketer):
    customer = CustomerFactory(external_id="157613", tags=["vip"])

    page = marketer.get(f"{CUSTOMERS}{customer.pk}/change/")
    response = marketer.post(
        f"{CUSTOMERS}{customer.pk}/change/",
        customer_post(email=customer.email, tags=" vip, newsletter ,, "),
    )

    assert 'value="vip"' in page.text
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.tags == ["vip", "newsletter"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("visits", "number", "twelve"), "“visits”: “twelve” is not a number."),
        (("visits", "number", "NaN"), "“visits”: “NaN” is not a number."),
        (("vip", "boolean", "yes"), "“vip”: true / false takes “true” or “false”."),
        (("orders", "json", "{broken"), "“orders”: “{broken” is not valid JSON."),
        (("country", "text", "a\x00b"), "“country”: NUL characters are not allowed."),
    ],
)
def test_customer_attribute_row_that_is_not_its_type_is_refused_naming_the_key(
    marketer, row, message
):
    customer = CustomerFactory(attributes={"country": "CZ"})

    response = marketer.post(
        f"{CUSTOMERS}{customer.pk}/change/",
        customer_post(external_id=customer.external_id, attributes=attribute_rows(row)),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["attributes"] == [message]
    customer.refresh_from_db()
    assert customer.attributes == {"country": "CZ"}


def test_customer_attribute_key_given_twice_is_refused(marketer):
    customer = CustomerFactory(attributes={"country": "CZ"})

    response = marketer.post(
        f"{CUSTOMERS}{customer.pk}/change/",
        customer_post(
            external_id=customer.external_id,
            attributes=attribute_rows(("a", "text", "1"), ("a", "text", "2")),
        ),
    )

    assert response.context["adminform"].form.errors["attributes"] == ["“a” appears twice."]
    customer.refresh_from_db()
    assert customer.attributes == {"country": "CZ"}


def test_customer_added_in_admin_is_stored(marketer):
    response = marketer.post(
        f"{CUSTOMERS}add/",
        customer_post(email="a@example.com", attributes=attribute_rows(("a", "number", "1"))),
    )

    assert response.status_code == 302
    customer = Customer.objects.get(external_id="157613")
    assert (customer.email, customer.attributes) == ("a@example.com", {"a": 1})


def test_customer_with_taken_external_id_is_rejected(marketer):
    CustomerFactory(external_id="157613")

    response = marketer.post(f"{CUSTOMERS}add/", customer_post())

    assert response.status_code == 200
    assert "Customer with this External id already exists." in response.text
    assert Customer.objects.count() == 1


def test_customer_delete_page_counts_what_goes_and_delete_erases_only_that(
    marketer, customer_history
):
    alice = customer_history("alice", 3)
    customer_history("bob", 1)

    page = marketer.get(f"{CUSTOMERS}{alice.pk}/delete/")
    response = marketer.post(f"{CUSTOMERS}{alice.pk}/delete/", {"post": "yes"})

    assert page.context["deleted_objects"][1:] == [
        "0 customer aliases",
        "3 events",
        "6 property records",
        "3 workflow runs",
        "0 policy usages",
        "0 policy counters",
        "0 segment memberships",
        "0 segment checks",
    ]
    assert "deliveries" not in page.context["model_count"]
    # The page says what the delete keeps, as it does (automation.privacy).
    assert page.context["kept_objects"] == [
        "3 deliveries kept as redacted rows (payloads blanked, pending ones cancelled)",
        "3 delivery attempts kept (response excerpts blanked)",
    ]
    kept = page.text[page.text.index('id="kept-objects"') :]
    assert "3 deliveries kept as redacted rows" in kept
    assert "deliveries" not in page.text[: page.text.index("Kept, not deleted")]
    assert response.status_code == 302
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["bob"]
    assert set(Event.objects.values_list("customer__external_id", flat=True)) == {"bob"}
    # Her deliveries stay as redacted rows (automation.privacy).
    assert (PropertyRecord.objects.count(), Delivery.objects.count()) == (2, 4)
    assert (DeliveryAttempt.objects.count(), WorkflowRun.objects.count()) == (4, 1)
    assert Delivery.objects.filter(event__isnull=True).count() == 3


def test_customer_delete_page_counts_rather_than_loads_the_rows(marketer, customer_history):
    small, big = customer_history("small", 1), customer_history("big", 200)

    _, small_queries = get_with_queries(marketer, f"{CUSTOMERS}{small.pk}/delete/")
    page, big_queries = get_with_queries(marketer, f"{CUSTOMERS}{big.pk}/delete/")

    assert len(big_queries) == len(small_queries)
    assert "200 events" in page.context["deleted_objects"]
    assert [sql for sql in big_queries if sql.startswith('SELECT "events_app_event"')] == []


def test_admin_bulk_delete_goes_through_the_set_based_service(customer_history):
    # The bulk action is off for big tables (BigTableAdmin); whatever calls
    # delete_queryset still deletes through customer_delete, never loading events.
    customer_history("alice", 20)
    customer_history("bob", 20)
    customer_history("carol", 1)
    model_admin = site._registry[Customer]

    with CaptureQueriesContext(connection) as queries:
        model_admin.delete_queryset(
            RequestFactory().post(CUSTOMERS), Customer.objects.exclude(external_id="carol")
        )

    assert list(Customer.objects.values_list("external_id", flat=True)) == ["carol"]
    assert Event.objects.count() == 1
    assert [q["sql"] for q in queries if q["sql"].startswith('SELECT "events_app_event"')] == []
    superuser = RequestFactory().get(CUSTOMERS)
    superuser.user = get_user_model()(is_staff=True, is_superuser=True)
    assert "delete_selected" not in model_admin.get_actions(superuser)


def test_unfiltered_customer_list_uses_the_planner_estimate_not_count(marketer, monkeypatch):
    for _ in range(8):
        CustomerFactory()
    treat_as_big_table("customers_customer", monkeypatch)

    response, queries = get_with_queries(marketer, CUSTOMERS)

    assert uncapped_counts(queries, "customers_customer") == []
    assert "about 8 customers" in response.text
