"""A customer with everything that hangs off them, made through the real services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from automation.due import due_events_process
from automation.webhooks.models import Delivery
from automation.webhooks.services import endpoint_create
from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.ingestion import events_ingest_batch
from events_app.models import EventType, PropertyDefinition
from events_app.schemas import EventCreateIn
from tests.deletes import PUBLIC_URL, attempt_each

History = Callable[..., Customer]


@pytest.fixture
def automation_on(db: None) -> None:
    """A `purchase` type (two properties), a webhook subscription and a workflow on it."""
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    for prop in ("amount", "currency"):
        PropertyDefinition.objects.create(event_type=purchase, property_id=prop)
    endpoint_create(url=PUBLIC_URL)
    workflow_create(
        data=WorkflowInput(
            name="every purchase", trigger_event_types=["purchase"], conditions={}, actions=[]
        )
    )
    active_workflows_forget()  # the cache is dropped on commit, which a `db` test never reaches


@pytest.fixture
def customer_history(
    automation_on: None, django_capture_on_commit_callbacks: Any
) -> Callable[..., Customer]:
    """history(external_id, events): per event 2 property records, a webhook delivery
    with one attempt and a workflow run — ingested and evaluated by the services."""

    def history(external_id: str, events: int) -> Customer:
        items = [
            msgspec.convert(
                {
                    "event": {"event_type": "purchase", "customer_external_id": external_id},
                    "property_records": [
                        {"property_id": "amount", "property_value": str(n)},
                        {"property_id": "currency", "property_value": "EUR"},
                    ],
                },
                EventCreateIn,
            )
            for n in range(events)
        ]
        with django_capture_on_commit_callbacks(execute=False):
            stored = events_ingest_batch(items=items).stored
            assert len(stored) == events
            due_events_process(event_ids=[e.id for e in stored])
        customer = Customer.objects.get(external_id=external_id)
        assert WorkflowRun.objects.filter(customer=customer).count() == events
        deliveries = Delivery.objects.filter(event__customer=customer)
        assert set(deliveries.values_list("customer_id", flat=True)) == {customer.pk}
        attempt_each(deliveries)
        return customer

    return history
