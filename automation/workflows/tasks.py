"""The workflow runner's Celery task: one run to advance (evaluation: automation.tasks)."""

from __future__ import annotations

from celery import shared_task

from automation.workflows.runner import ADVANCE_TASK, workflow_run_advance

# Message priority on the Redis broker (0 is served first; kombu polls a queue's
# priority levels in order): a claim of due events (automation.tasks) is never stuck
# behind a backlog of actions on the same queue.
ACTIONS_PRIORITY = 6


@shared_task(
    name=ADVANCE_TASK, acks_late=True, reject_on_worker_lost=True, priority=ACTIONS_PRIORITY
)
def advance_workflow_run_task(run_id: str) -> None:
    """Run one workflow run's actions from its position (after a wait or a lost worker)."""
    workflow_run_advance(run_id=run_id)
