"""The `{"segment": key}` leaf in workflow conditions: it sees the membership the
event itself just changed, and a segment a workflow reads cannot be deleted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from automation.segments.models import Segment
from automation.segments.services import segment_delete
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.models import Event, EventType
from project.errors import ConflictError, ValidationFailed

pytestmark = pytest.mark.django_db


def test_a_workflow_condition_on_a_segment_sees_the_entry_its_event_caused(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    make_segment("repeat", {"count": {"event_type": "purchase"}, "op": "gte", "value": 2})
    workflow = workflow_create(
        data=WorkflowInput(
            name="Welcome repeat buyers",
            trigger_event_types=["purchase"],
            conditions={"all": [{"segment": "repeat"}]},
        )
    )
    first = ingest(customer="alice")
    second = ingest(customer="alice")
    runs = WorkflowRun.objects.filter(workflow=workflow)
    assert list(runs.values_list("event_id", flat=True)) == [second.pk]
    assert not runs.filter(event=first).exists()
    leaves = runs.get().explanation["leaves"]
    assert leaves == [
        {
            "path": "conditions.all[0]",
            "segment": "repeat",
            "op": "eq",
            "expected": True,
            "actual": True,
            "missing": False,
            "matched": True,
        }
    ]


def test_a_workflow_naming_an_unknown_segment_is_refused(purchase: EventType) -> None:
    with pytest.raises(ValidationFailed) as caught:
        workflow_create(
            data=WorkflowInput(
                name="w", trigger_event_types=["purchase"], conditions={"not": {"segment": "x"}}
            )
        )
    assert caught.value.details == {"conditions": ["Unknown segment(s): x."]}
    assert not Workflow.objects.exists()


def test_a_segment_a_workflow_reads_cannot_be_deleted(
    purchase: EventType, make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment("vip", {"customer": "tags", "op": "contains", "value": "vip"})
    workflow = workflow_create(
        data=WorkflowInput(
            name="w", trigger_event_types=["purchase"], conditions={"segment": segment.pk}
        )
    )
    with pytest.raises(ConflictError) as caught:
        segment_delete(segment=segment)
    assert caught.value.extra == {"workflows": [workflow.pk]}
    assert Segment.objects.filter(pk=segment.pk).exists()
