"""Deleting a workflow: exactly its runs go, set-based; another workflow's runs stay."""

from __future__ import annotations

from typing import Any

import pytest

from automation.models import Workflow, WorkflowRun
from automation.workflow_runs import events_evaluate
from automation.workflow_selectors import active_workflows_forget
from automation.workflows import WorkflowInput, workflow_create, workflow_delete
from events_app.models import EventType
from tests.deletes import row_counts
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

TABLES = (Workflow, Workflow.trigger_event_types.through, WorkflowRun, EventType)
# Reading the workflow's key, SAVEPOINTs, one DELETE per table: whatever the runs.
MAX_QUERIES = 8


def workflow(name: str) -> Workflow:
    return workflow_create(
        data=WorkflowInput(name=name, trigger_event_types=["purchase"], conditions={}, actions=[])
    )


def evaluated(count: int, capture: Any) -> None:
    """`count` purchases, each evaluated: one run per workflow (made by the engine)."""
    purchase, customer = EventType.objects.get(key="purchase"), CustomerFactory()
    events = [
        EventFactory(event_type=purchase, customer=customer, automation_pending=True)
        for _ in range(count)
    ]
    active_workflows_forget()  # the cache is dropped on commit, which a `db` test never reaches
    with capture(execute=False):
        events_evaluate(event_ids=[e.pk for e in events])


def test_deleting_a_workflow_removes_exactly_its_runs_and_nothing_of_another(
    django_capture_on_commit_callbacks,
):
    EventTypeFactory(key="purchase")
    gone, kept = workflow("gone"), workflow("kept")
    evaluated(3, django_capture_on_commit_callbacks)

    deleted = workflow_delete(workflow=gone)

    assert deleted == {
        "automation.Workflow": 1,
        "automation.Workflow_trigger_event_types": 1,
        "automation.WorkflowRun": 3,
    }
    assert row_counts(*TABLES) == {
        "automation.Workflow": 1,
        "automation.Workflow_trigger_event_types": 1,
        "automation.WorkflowRun": 3,
        "events_app.EventType": 1,
    }
    assert set(WorkflowRun.objects.values_list("workflow_id", flat=True)) == {kept.pk}


@pytest.mark.parametrize("runs", [1, 200])
def test_delete_takes_the_same_queries_whatever_the_number_of_runs(
    django_capture_on_commit_callbacks, django_assert_max_num_queries, runs: int
):
    EventTypeFactory(key="purchase")
    gone = workflow("gone")
    evaluated(runs, django_capture_on_commit_callbacks)
    assert WorkflowRun.objects.count() == runs

    with django_assert_max_num_queries(MAX_QUERIES) as queries:
        workflow_delete(workflow=gone)

    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert [sql.split(" WHERE ")[0] for sql in reads] == [
        'SELECT "automation_workflow"."id" AS "pk" FROM "automation_workflow"'
    ]
    assert WorkflowRun.objects.count() == 0
