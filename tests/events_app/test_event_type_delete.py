"""Deleting an event type: its definitions and links go set-based; one with events is a 409."""

from __future__ import annotations

import pytest

from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_create
from automation.workflows.models import Workflow
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.event_types import event_type_delete
from events_app.models import Event, EventCount, EventType, PropertyDefinition
from project.errors import ConflictError
from tests.deletes import PUBLIC_URL, row_counts
from tests.factories import EventFactory, EventTypeFactory, PropertyDefinitionFactory

pytestmark = pytest.mark.django_db

TABLES = (
    EventType,
    PropertyDefinition,
    EventCount,
    Event,
    Workflow,
    Workflow.trigger_event_types.through,
    Endpoint,
    Endpoint.event_types.through,
)
# The row lock, reading the key, the PROTECT check, SAVEPOINTs and one DELETE per
# table: whatever the number of property definitions; and the audit entry (the
# definitions read in one query, one INSERT).
MAX_QUERIES = 15


def in_use(key: str, properties: int) -> EventType:
    """A type with property definitions, a workflow trigger and a webhook subscription."""
    event_type = EventTypeFactory(key=key)
    for n in range(properties):
        PropertyDefinitionFactory(event_type=event_type, property_id=f"p{n}")
    workflow_create(
        data=WorkflowInput(name=key, trigger_event_types=[key], conditions={}, actions=[])
    )
    endpoint_create(url=PUBLIC_URL, event_types=[key])
    return event_type


def test_deleting_an_unused_type_removes_exactly_its_rows_and_nothing_of_another():
    gone, kept = in_use("signup", 3), in_use("purchase", 2)
    EventFactory(event_type=kept)

    event_type_delete(event_type=gone)

    assert row_counts(*TABLES) == {
        "events_app.EventType": 1,
        "events_app.PropertyDefinition": 2,
        "events_app.EventCount": EventCount.objects.filter(event_type=kept).count(),
        "events_app.Event": 1,
        # The workflow and the endpoint stay, without the deleted trigger / subscription.
        "automation.Workflow": 2,
        "automation.Workflow_trigger_event_types": 1,
        "automation.Endpoint": 2,
        "automation.Endpoint_event_types": 1,
    }
    assert set(PropertyDefinition.objects.values_list("event_type_id", flat=True)) == {kept.pk}


def test_a_type_with_events_is_a_409_and_nothing_changes():
    purchase = in_use("purchase", 2)
    EventFactory(event_type=purchase)
    before = row_counts(*TABLES)

    with pytest.raises(ConflictError) as refused:
        event_type_delete(event_type=purchase)

    assert refused.value.message == f"Event type '{purchase.pk}' has events and cannot be deleted."
    assert row_counts(*TABLES) == before


@pytest.mark.parametrize("properties", [1, 200])
def test_delete_takes_the_same_queries_whatever_the_number_of_definitions(
    django_assert_max_num_queries, properties: int
):
    event_type = in_use("signup", properties)

    with django_assert_max_num_queries(MAX_QUERIES):
        event_type_delete(event_type=event_type)

    assert row_counts(EventType, PropertyDefinition) == {
        "events_app.EventType": 0,
        "events_app.PropertyDefinition": 0,
    }
