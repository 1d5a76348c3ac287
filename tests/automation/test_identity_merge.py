"""Automation's part in customer merges: the dry run's segment preview, the internal
customer.merged event, and workflows that take (or by default ignore) merged events."""

from __future__ import annotations

from typing import Any

import pytest

from automation.due import due_events_process
from automation.identity import MERGED_EVENT_TYPE, merged_events_evaluate
from automation.segments.models import Segment, SegmentMembership
from automation.segments.services import SegmentInput, segment_create
from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_create
from customers.identity.models import CustomerMerge
from customers.identity.services import customer_merge
from customers.models import Customer
from events_app.models import Event, EventType, PropertyRecord
from tests.factories import CustomerFactory, EventFactory

pytestmark = pytest.mark.django_db

VIP = {"customer": "tags", "op": "contains", "value": "vip"}


@pytest.fixture(autouse=True)
def _fresh_workflow_cache() -> Any:
    active_workflows_forget()
    yield
    active_workflows_forget()


def _segment(key: str, condition: dict[str, Any], capture: Any) -> Segment:
    with capture(execute=True):
        return segment_create(data=SegmentInput(key=key, name=key, condition=condition))


def test_dry_run_names_the_segments_the_merged_customer_enters_and_changes_nothing(
    django_capture_on_commit_callbacks: Any,
):
    primary = CustomerFactory(external_id="p", tags=[])
    secondary = CustomerFactory(external_id=None, tags=["vip"])
    _segment("vip", VIP, django_capture_on_commit_callbacks)
    assert SegmentMembership.objects.get().customer_id == secondary.pk
    stays = list(SegmentMembership.objects.values())

    preview = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk, dry_run=True)

    assert isinstance(preview, dict)
    assert preview["segments"] == {"entered": ["vip"], "exited": [], "secondary_exited": []}
    assert list(SegmentMembership.objects.values()) == stays
    assert Customer.objects.count() == 2


def test_a_merge_re_evaluates_the_primarys_segments(django_capture_on_commit_callbacks: Any):
    primary = CustomerFactory(external_id="p", tags=[])
    secondary = CustomerFactory(external_id=None, tags=["vip"])
    segment = _segment("vip", VIP, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)

    stay = SegmentMembership.objects.get(segment=segment, exited_at__isnull=True)
    assert stay.customer_id == primary.pk


def test_a_merge_emits_customer_merged_that_workflows_trigger_on(
    django_capture_on_commit_callbacks: Any,
):
    primary = CustomerFactory(external_id="p")
    secondary = CustomerFactory(external_id=None, anonymous_id="visitor")
    customer_merge(primary_id=primary.pk, secondary_id=CustomerFactory(external_id=None).pk)
    workflow = workflow_create(
        data=WorkflowInput(name="on merge", trigger_event_types=[MERGED_EVENT_TYPE])
    )

    with django_capture_on_commit_callbacks(execute=False):
        merge = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)
    assert isinstance(merge, CustomerMerge)
    event = Event.objects.filter(event_type__key=MERGED_EVENT_TYPE).latest("id")
    due_events_process(event_ids=[event.pk])

    assert event.customer_id == primary.pk
    assert dict(
        PropertyRecord.objects.filter(event=event).values_list("property_id", "property_value")
    ) == {
        "merge_id": merge.pk,
        "primary_customer_id": primary.pk,
        "secondary_customer_id": secondary.pk,
        "primary_external_id": "p",
    }
    assert WorkflowRun.objects.get(workflow=workflow).event_id == event.pk


def test_only_workflows_that_take_merged_events_evaluate_the_moved_events_once(
    django_capture_on_commit_callbacks: Any,
):
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    primary = CustomerFactory(external_id="p")
    secondary = CustomerFactory(external_id=None)
    old = EventFactory(customer=secondary, event_type=purchase)
    takes = workflow_create(
        data=WorkflowInput(
            name="takes", trigger_event_types=["purchase"], trigger_on_merged_events=True
        )
    )
    ignores = workflow_create(data=WorkflowInput(name="ignores", trigger_event_types=["purchase"]))

    with django_capture_on_commit_callbacks(execute=True):
        merge = customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)
    assert isinstance(merge, CustomerMerge)
    merged_events_evaluate(merge_id=merge.pk)  # again: nothing more

    run = WorkflowRun.objects.get(workflow=takes)
    assert (run.event_id, run.customer_id) == (old.pk, primary.pk)
    assert not WorkflowRun.objects.filter(workflow=ignores).exists()


def test_frequency_conditions_count_the_history_a_merge_brought(
    django_capture_on_commit_callbacks: Any,
):
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    primary = CustomerFactory(external_id="p")
    secondary = CustomerFactory(external_id=None)
    for _ in range(2):
        EventFactory(customer=secondary, event_type=purchase)
    customer_merge(primary_id=primary.pk, secondary_id=secondary.pk)
    third = workflow_create(
        data=WorkflowInput(
            name="third purchase",
            trigger_event_types=["purchase"],
            conditions={
                "count": {"event_type": "purchase", "within": "P7D"},
                "op": "gte",
                "value": 3,
            },
        )
    )

    event = EventFactory(customer=primary, event_type=purchase, automation_pending=True)
    due_events_process(event_ids=[event.pk])

    assert WorkflowRun.objects.get(workflow=third).event_id == event.pk
