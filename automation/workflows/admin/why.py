"""Why (not): a workflow tested against an event, explained leaf by leaf, in the admin.

The explanation is POST /workflows/{id}/test's (automation.workflows.dry_run.workflow_test):
the same evaluator, the facts as a worker would read them now, nothing fired. Around
it the page says what the dry run cannot: whether the workflow is active and whether
a run exists for the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from django.utils.safestring import SafeString

from automation.workflows.admin.render import explanation_table
from automation.workflows.dry_run import workflow_test
from automation.workflows.models import Workflow, WorkflowRun
from events_app.models import Event

RECENT_EVENTS_PER_TYPE = 5


@dataclass
class Why:
    """One workflow's answer for one event."""

    workflow: Workflow
    result: dict[str, Any]
    run: WorkflowRun | None
    verdict: str
    table: SafeString

    @property
    def run_url(self) -> str:
        return (
            reverse("admin:automation_workflowrun_change", args=[self.run.pk]) if self.run else ""
        )


def _verdict(workflow: Workflow, result: dict[str, Any], run: WorkflowRun | None, key: str) -> str:
    if run is not None:
        return f"It ran for this event: {run.status}."
    if not result["triggered"]:
        return f"Not triggered: its trigger types do not include '{key}'."
    if not result["conditions_matched"]:
        return "Not run: the conditions do not match (✘ below)."
    if not workflow.active:
        return "The conditions match, but the workflow is inactive."
    return (
        "The conditions match now, yet no run exists for this event: the re-entry policy "
        f"({workflow.reentry}) held it back, or the event was evaluated before the "
        "workflow or its conditions were as they are now."
    )


def why(*, event: Event, workflows: list[Workflow]) -> list[Why]:
    """Each workflow tested against the event (the dry run), with its run if any."""
    runs = {
        run.workflow_id: run
        for run in WorkflowRun.objects.filter(
            event_id=event.pk, workflow__in=[w.pk for w in workflows]
        )
    }
    key = event.event_type.key
    answers = []
    for workflow in workflows:
        result = workflow_test(workflow=workflow, event=event)
        run = runs.get(workflow.pk)
        answers.append(
            Why(
                workflow=workflow,
                result=result,
                run=run,
                verdict=_verdict(workflow, result, run, key),
                table=explanation_table(result["leaves"]),
            )
        )
    return answers


def workflows_triggered_by(event: Event) -> list[Workflow]:
    """The workflows whose trigger types include the event's type, active ones first."""
    return list(
        Workflow.objects.filter(trigger_event_types=event.event_type_id)
        .prefetch_related("trigger_event_types")
        .order_by("-active", "name")
    )


def recent_events(workflow: Workflow) -> list[Event]:
    """The newest few events of each trigger type, to test with one click
    (event_type_created_idx: one short backwards index scan per type)."""
    events: list[Event] = []
    for type_id in workflow.trigger_event_types.values_list("pk", flat=True):
        events.extend(
            Event.objects.filter(event_type_id=type_id)
            .select_related("event_type", "customer")
            .order_by("-created_at", "-id")[:RECENT_EVENTS_PER_TYPE]
        )
    return sorted(events, key=lambda e: (e.created_at, e.pk), reverse=True)
