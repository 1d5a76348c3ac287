"""Automation's Celery tasks, one module per subsystem (Celery autodiscovers `tasks`)."""

from __future__ import annotations

from automation.segments.tasks import (
    segment_build_task,
    segments_refresh_customers_task,
    segments_refresh_events_task,
)
from automation.webhooks.tasks import deliver_one_task
from automation.workflows.tasks import advance_workflow_run_task, evaluate_events_task

__all__ = [
    "advance_workflow_run_task",
    "deliver_one_task",
    "evaluate_events_task",
    "segment_build_task",
    "segments_refresh_customers_task",
    "segments_refresh_events_task",
]
