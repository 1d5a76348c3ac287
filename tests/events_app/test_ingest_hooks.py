"""events_app stores events with or without the ingest hook automation registers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import serializers

from automation.ingest import INGEST_HOOK
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow
from automation.workflows.selectors import active_workflows_forget
from events_app.api.serializers import EventSerializer
from events_app.ingest_hooks import ingest_hook, ingest_hook_register
from events_app.models import Event
from events_app.payloads import EVENT_FIELDS, event_payload
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_hook() -> Iterator[None]:
    active_workflows_forget()
    previous = ingest_hook_register(None)
    yield
    ingest_hook_register(previous)


def post_event(api: Any, event_type_id: str, ref: str) -> str:
    customer = CustomerFactory()
    response = api.post(
        f"{API}/events",
        {"event": {"event_type_id": event_type_id, "customer_id": customer.id, "external_id": ref}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["data"]["event_id"])


def test_automation_registers_its_hook_when_django_starts() -> None:
    assert ingest_hook() is INGEST_HOOK


def test_without_a_hook_an_event_is_stored_with_no_delivery_and_no_evaluation(
    api: Any, no_hook: None
) -> None:
    purchase = EventTypeFactory(key="purchase")
    Endpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_x")
    workflow = Workflow.objects.create(name="w", conditions={}, actions=[], active=True)
    workflow.trigger_event_types.set([purchase])

    with CaptureQueriesContext(connection) as queries:
        event_id = post_event(api, purchase.id, "r1")

    event = Event.objects.get(pk=event_id)
    assert (event.is_delivered, event.automation_pending) == (True, False)
    assert Delivery.objects.count() == 0
    # Nothing of automation is read: the reference read has no facts in it.
    assert not any("automation_" in q["sql"] for q in queries.captured_queries)


def test_without_a_hook_marking_an_event_delivered_only_sets_the_flag(
    api: Any, no_hook: None
) -> None:
    event = EventFactory(is_delivered=False)

    response = api.patch(f"{API}/events/{event.id}", {"is_delivered": True}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["data"]["is_delivered"] is True
    assert Event.objects.filter(is_delivered=True).count() == 1


class _FieldByField(EventSerializer):
    """DRF's own rendering of the declared fields, to check `event_payload` against."""

    def to_representation(self, instance: Event) -> dict[str, Any]:
        return dict(serializers.ModelSerializer.to_representation(self, instance))


def test_the_payload_is_what_the_serializer_fields_render() -> None:
    processed = EventFactory(
        external_id=None,
        secondary_external_id="s-1",
        data={"total": 12.5, "items": ["a"]},
        occurred_at=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        state=Event.State.COMPLETED,
        completed_at=datetime(2024, 1, 3, tzinfo=UTC),
        is_delivered=False,
    )
    unsaved = Event(
        id="evt_unsaved",
        event_type_id=processed.event_type_id,
        customer_id=processed.customer_id,
        external_id="r",
        secondary_external_id=None,
        data={},
        occurred_at=datetime(2024, 5, 6, tzinfo=UTC),
        created_at=datetime(2024, 5, 6, 0, 0, 1, tzinfo=UTC),
    )

    for event in (Event.objects.get(pk=processed.pk), unsaved):
        payload = event_payload(event)
        assert payload == _FieldByField().to_representation(event)
        assert tuple(payload) == EVENT_FIELDS
    assert event_payload(unsaved)["state"] == 1
    assert event_payload(unsaved)["created_at"] == "2024-05-06T00:00:01Z"
