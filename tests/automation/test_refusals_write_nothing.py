"""A refused configuration change writes nothing: the rows before and after are the same."""

from __future__ import annotations

from typing import Any

import pytest

from automation.due import due_events_process
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.workflows.models import Workflow, WorkflowEndpoint
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


def rows() -> dict[str, Any]:
    """Every row these surfaces could touch, as plain values."""
    return {
        "endpoints": sorted(Endpoint.objects.values(), key=lambda e: e["id"]),
        "endpoint_types": sorted(Endpoint.event_types.through.objects.values_list()),
        "deliveries": sorted(Delivery.objects.values(), key=lambda d: d["id"]),
        "attempts": DeliveryAttempt.objects.count(),
        "workflows": sorted(Workflow.objects.values(), key=lambda w: w["id"]),
        "workflow_endpoints": WorkflowEndpoint.objects.count(),
    }


def test_webhook_patch_to_a_private_url_is_400_and_changes_nothing(api, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    created = api.post(
        f"{API}/webhooks",
        {"webhook": {"url": "https://93.184.215.14/hook", "description": "shop"}},
        format="json",
    )
    webhook_id = created.json()["data"]["webhook_id"]
    before = rows()

    response = api.patch(
        f"{API}/webhooks/{webhook_id}",
        {"webhook": {"url": "http://10.0.0.1/hook", "description": "changed", "active": False}},
        format="json",
    )

    assert response.status_code == 400
    assert "URL not allowed" in response.json()["message"]
    assert rows() == before


def test_redeliver_of_a_disabled_webhooks_delivery_is_409_and_changes_nothing(api):
    purchase = EventTypeFactory(key="purchase")
    endpoint = Endpoint.objects.create(url="https://93.184.215.14/hook", secret="whsec_x")
    customer = CustomerFactory()
    ingested = api.post(
        f"{API}/events",
        {"event": {"event_type_id": purchase.id, "customer_id": customer.id}},
        format="json",
    )
    due_events_process()  # what the worker a commit wakes does
    delivery = Delivery.objects.get(event_id=ingested.json()["data"]["event_id"])
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", queued_until=None)
    Endpoint.objects.filter(pk=endpoint.pk).update(active=False)
    before = rows()
    event_before = delivery.event.is_delivered

    response = api.post(f"{API}/deliveries/{delivery.pk}/redeliver")

    assert response.status_code == 409
    assert response.json()["message"] == "The webhook is disabled; enable it before redelivering."
    assert rows() == before
    delivery.event.refresh_from_db()
    assert delivery.event.is_delivered is event_before


def test_a_refused_workflow_patch_is_400_and_changes_nothing(api, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    EventTypeFactory(key="purchase")
    created = api.post(
        f"{API}/workflows",
        {
            "workflow": {
                "name": "Big spenders",
                "trigger_event_types": ["purchase"],
                "conditions": {"all": [{"property": "amount", "op": "gte", "value": 100}]},
                "actions": [{"type": "webhook", "url": "https://93.184.215.14/hook"}],
            }
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    workflow_id = created.json()["data"]["workflow_id"]
    before = rows()

    refused = [
        # A valid change beside an invalid one: neither is applied.
        {"name": "Renamed", "conditions": {"any": []}},
        {"name": "Renamed", "actions": [{"type": "webhook", "url": "http://10.0.0.1/hook"}]},
        {"name": "Renamed", "trigger_event_types": ["nope"]},
    ]
    responses = [
        api.patch(f"{API}/workflows/{workflow_id}", {"workflow": change}, format="json")
        for change in refused
    ]

    assert [r.status_code for r in responses] == [400, 400, 400]
    assert rows() == before
