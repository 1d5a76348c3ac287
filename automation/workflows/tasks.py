"""The workflow runner's Celery tasks: a batch of events to evaluate, one run to advance."""

from __future__ import annotations

from celery import shared_task

from automation.workflows.runner import (
    ADVANCE_TASK,
    EVALUATE_TASK,
    events_evaluate_and_run,
    workflow_run_advance,
)

# Message priorities on the Redis broker (0 is served first; kombu polls a queue's
# priority levels in order): an evaluation is never stuck behind a backlog of actions
# on the same queue, so a burst of runs cannot delay the next batch's runs.
EVALUATION_PRIORITY = 0
ACTIONS_PRIORITY = 6


@shared_task(
    name=EVALUATE_TASK, acks_late=True, reject_on_worker_lost=True, priority=EVALUATION_PRIORITY
)
def evaluate_events_task(event_ids: list[str]) -> int:
    """Evaluate a batch of events' workflows and run the new runs' actions."""
    return events_evaluate_and_run(event_ids=event_ids)


@shared_task(
    name=ADVANCE_TASK, acks_late=True, reject_on_worker_lost=True, priority=ACTIONS_PRIORITY
)
def advance_workflow_run_task(run_id: str) -> None:
    """Run one workflow run's actions from its position (after a wait or a lost worker)."""
    workflow_run_advance(run_id=run_id)
