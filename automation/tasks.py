"""Automation's Celery tasks, one module per subsystem (Celery autodiscovers `tasks`),
and the claimer of due events (automation.due)."""

from __future__ import annotations

from celery import shared_task

from automation.due import CLAIM_TASK, due_events_drain
from automation.segments.tasks import (
    segment_broadcast_task,
    segment_build_task,
    segments_refresh_customers_task,
)
from automation.webhooks.tasks import deliver_one_task
from automation.workflows.simulation.tasks import backfill_workflow_task, simulate_workflow_task
from automation.workflows.tasks import advance_workflow_run_task

__all__ = [
    "advance_workflow_run_task",
    "backfill_workflow_task",
    "claim_due_task",
    "deliver_one_task",
    "segment_broadcast_task",
    "segment_build_task",
    "segments_refresh_customers_task",
    "simulate_workflow_task",
]

# Served before actions on a shared queue (automation.workflows.tasks).
CLAIM_PRIORITY = 0


@shared_task(name=CLAIM_TASK, acks_late=True, reject_on_worker_lost=True, priority=CLAIM_PRIORITY)
def claim_due_task(slot: int = 0) -> int:
    """Claim due events until none is left: evaluation and delivery fan-out (a wake-up;
    `slot`: a helper asked for by a claimer that found a backlog, automation.due)."""
    return due_events_drain(slot=slot)
