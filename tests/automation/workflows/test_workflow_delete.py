"""Deleting a workflow: exactly its runs go, set-based; another workflow's runs stay."""

from __future__ import annotations

import pytest

from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create, workflow_delete
from events_app.models import EventType
from tests.deletes import evaluated, row_counts
from tests.factories import EventTypeFactory

pytestmark = pytest.mark.django_db

TABLES = (Workflow, Workflow.trigger_event_types.through, WorkflowRun, EventType)
# Reading the workflow's key and its endpoints, SAVEPOINTs, one DELETE per table (its
# runs, trigger types, segment broadcasts, simulations and backfills among them): whatever
# the runs; and the audit entry (its trigger types read, one INSERT).
MAX_QUERIES = 15


def workflow(name: str) -> Workflow:
    return workflow_create(
        data=WorkflowInput(name=name, trigger_event_types=["purchase"], conditions={}, actions=[])
    )


def test_deleting_a_workflow_removes_exactly_its_runs_and_nothing_of_another(
    django_capture_on_commit_callbacks,
):
    purchase = EventTypeFactory(key="purchase")
    gone, kept = workflow("gone"), workflow("kept")
    evaluated(purchase, 3, django_capture_on_commit_callbacks)

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
    purchase = EventTypeFactory(key="purchase")
    gone = workflow("gone")
    evaluated(purchase, runs, django_capture_on_commit_callbacks)
    assert WorkflowRun.objects.count() == runs

    with django_assert_max_num_queries(MAX_QUERIES) as queries:
        workflow_delete(workflow=gone)

    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 3
    assert ' FROM "automation_workflowendpoint" ' in reads[0]  # its endpoints: none here
    # Its trigger types, for the audit entry's "before" (one query, a few rows).
    assert ' FROM "events_app_eventtype" ' in reads[1]
    assert reads[2].split(" WHERE ")[0] == (
        'SELECT "automation_workflow"."id" AS "pk" FROM "automation_workflow"'
    )
    assert WorkflowRun.objects.count() == 0
