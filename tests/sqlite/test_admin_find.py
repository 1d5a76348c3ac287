"""The admin's tag filter (JSON containment on PostgreSQL, json_each on SQLite) and its
prefix searches (an expression index on PostgreSQL, SQLite's own LIKE), on both."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

CUSTOMERS = "/admin/customers/customer/"


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-123456")
    client = Client()
    client.force_login(user)
    return client


def listed(response) -> list[str]:
    assert response.status_code == 200
    return sorted(obj.external_id for obj in response.context["cl"].result_list)


def test_customers_are_filtered_by_an_exact_tag(staff):
    CustomerFactory(external_id="vip", tags=["vip", "newsletter"])
    CustomerFactory(external_id="almost", tags=["VIP", "vip-ish", "xvip"])
    CustomerFactory(external_id="none", tags=[])

    assert listed(staff.get(CUSTOMERS, {"tag": "vip"})) == ["vip"]
    assert listed(staff.get(CUSTOMERS, {"tag": "newsletter"})) == ["vip"]
    assert listed(staff.get(CUSTOMERS, {"tag": "absent"})) == []


def test_customers_and_events_are_found_by_prefix_in_any_case(staff):
    ann = CustomerFactory(external_id="customer_001", email="Ann@shop.example")
    CustomerFactory(external_id="xcustomer_001", email="bob@shop.example")
    event = EventFactory(customer=ann, external_id="Order-1")
    EventFactory(external_id="x-order-1")

    found = staff.get(CUSTOMERS, {"q": "ANN@"})
    events = staff.get("/admin/events_app/event/", {"q": "order-"})

    assert listed(found) == ["customer_001"]
    assert [e.pk for e in events.context["cl"].result_list] == [event.pk]
