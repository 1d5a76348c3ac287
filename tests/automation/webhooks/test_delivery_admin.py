"""Admin pages of endpoints and deliveries render, and their actions call the services."""

from __future__ import annotations

import pytest
from django.db import transaction

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one
from tests.factories import CustomerFactory
from tests.receiver import Reply

pytestmark = pytest.mark.django_db


def test_delivery_admin_lists_shows_attempts_and_redelivers(admin_client, make_endpoint, receiver):
    receiver.reply(Reply(status=404), Reply(status=200))
    endpoint, _ = make_endpoint()
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"a": 1})
    deliver_one(delivery.pk)

    assert admin_client.get("/admin/automation/delivery/").status_code == 200
    assert admin_client.get("/admin/automation/endpoint/").status_code == 200
    page = admin_client.get(f"/admin/automation/delivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert b"HTTP 404" in page.content
    response = admin_client.post(
        "/admin/automation/delivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.retry_step) == ("pending", 0)


def test_endpoint_admin_disable_action_fails_pending_deliveries(admin_client, make_endpoint):
    endpoint, _ = make_endpoint()
    with transaction.atomic():
        delivery = delivery_create(endpoint=endpoint, payload={"a": 1})
    admin_client.post(
        "/admin/automation/endpoint/",
        {"action": "disable_endpoints", "_selected_action": [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert endpoint.active is False
    assert endpoint.disabled_reason.startswith("Disabled by ")
    assert delivery.status == Delivery.Status.FAILED


def test_endpoint_admin_refuses_a_private_url(admin_client, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    response = admin_client.post(
        "/admin/automation/endpoint/add/",
        {
            "kind": "subscription",
            "url": "http://169.254.169.254/",
            "description": "",
            "active": "on",
        },
    )
    assert response.status_code == 200
    assert b"URL not allowed" in response.content
    assert Endpoint.objects.count() == 0


def test_a_deliverys_page_links_its_customer_and_the_search_finds_their_deliveries(
    admin_client, make_endpoint
):
    endpoint, _ = make_endpoint()
    alice, bob = CustomerFactory(), CustomerFactory()
    with transaction.atomic():
        hers = delivery_create(endpoint=endpoint, payload={"a": 1}, customer_id=alice.pk)
        delivery_create(endpoint=endpoint, payload={"a": 2}, customer_id=bob.pk)
        ping = delivery_create(endpoint=endpoint, payload={"a": 3})

    page = admin_client.get(f"/admin/automation/delivery/{hers.pk}/change/").content.decode()
    found = admin_client.get("/admin/automation/delivery/", {"q": alice.pk})

    assert f'href="/admin/customers/customer/{alice.pk}/change/"' in page
    assert [d.pk for d in found.context["cl"].result_list] == [hers.pk]
    ping_page = admin_client.get(f"/admin/automation/delivery/{ping.pk}/change/")
    assert ping_page.status_code == 200
