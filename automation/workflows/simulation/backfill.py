"""Backfill: a saved workflow run over its past events, once per (workflow, event).

Protocol: `backfill_create` stores a WorkflowBackfill (its watermark: now) and hands it
on after commit; `backfill_run` (the task) replays the period up to the watermark
(automation.workflows.simulation.replay) and inserts each page's runs (`source`
backfill; ON CONFLICT DO NOTHING on the run's unique (event, workflow)) with the
page's cursor in one transaction, the runs' actions handed on after commit. A backfill
whose worker died is handed on again by `simulations_resume_stale` (services): the
replay starts again from `start` and inserts only after the cursor.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from automation.workflows.evaluation import _advisory_locks, run_row, runs_insert
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import runs_hand_on
from automation.workflows.selectors import LoadedWorkflow
from automation.workflows.simulation.models import WorkflowBackfill
from automation.workflows.simulation.replay import Page, Replay, ReplayedRun, ReplaySpec
from automation.workflows.simulation.targets import check_period, saved_target
from project import background
from project.errors import ConflictError, ValidationFailed

logger = logging.getLogger(__name__)

BACKFILL_TASK = "automation.backfill_workflow"
Status = WorkflowBackfill.Status


def backfill_create(*, workflow: Workflow, start: datetime) -> WorkflowBackfill:
    """Start a backfill of an active, event-triggered workflow from `start` to now."""
    now = timezone.now()
    if not workflow.active:
        raise ConflictError(
            "Activate the workflow before backfilling it: the runs it makes run its actions."
        )
    if not workflow.trigger_event_types.exists():
        raise ValidationFailed(
            "A backfill replays events: the workflow has no trigger_event_types.",
            details={"from": ["The workflow has no trigger event types."]},
        )
    check_period(start, now)
    try:
        with transaction.atomic():
            backfill = WorkflowBackfill.objects.create(
                workflow=workflow, start=start, watermark=now
            )
    except IntegrityError:
        raise ConflictError("A backfill of this workflow is running already.") from None
    transaction.on_commit(lambda: background.enqueue(BACKFILL_TASK, backfill.pk))
    return backfill


def backfill_run(*, backfill_id: str) -> bool:
    """The task: replay the backfill's period, inserting each page's runs with its
    cursor (resumable: pages up to the cursor insert nothing again)."""
    now = timezone.now()
    if not WorkflowBackfill.objects.filter(pk=backfill_id, status=Status.RUNNING).update(
        updated_at=now
    ):
        return False
    backfill = WorkflowBackfill.objects.select_related("workflow").get(pk=backfill_id)
    workflow = backfill.workflow
    target = saved_target(workflow)
    replay = Replay(
        ReplaySpec(
            workflow=target.loaded,
            trigger_type_ids=target.trigger_type_ids,
            saved_workflow_id=workflow.pk,
            created_before=backfill.watermark,
        ),
        start=backfill.start,
        end=backfill.watermark,
    )
    cursor = (
        (backfill.cursor_occurred_at, backfill.cursor_event_id)
        if backfill.cursor_occurred_at is not None
        else None
    )
    span = (backfill.watermark - backfill.start).total_seconds()
    considered = 0
    try:
        for page in replay.pages():
            considered += page.considered
            fresh = [
                run
                for run in page.runs
                if cursor is None or (run.row.occurred_at, run.row.id) > cursor
            ]
            _backfill_page(backfill, target.loaded, fresh, page, considered, span)
    except Exception as exc:
        logger.exception("backfill %s failed", backfill_id)
        WorkflowBackfill.objects.filter(pk=backfill_id, status=Status.RUNNING).update(
            status=Status.FAILED,
            error=f"{exc.__class__.__name__}: {exc}"[:1000],
            finished_at=timezone.now(),
        )
        return True
    WorkflowBackfill.objects.filter(pk=backfill_id, status=Status.RUNNING).update(
        status=Status.DONE,
        progress=1.0,
        events_considered=considered,
        finished_at=timezone.now(),
    )
    return True


def _backfill_page(
    backfill: WorkflowBackfill,
    loaded: LoadedWorkflow,
    runs: list[ReplayedRun],
    page: Page,
    considered: int,
    span: float,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        inserted: list[str] = []
        if runs:
            # The same locks live evaluation takes for its re-entry decisions.
            _advisory_locks([(loaded.id, run.row.customer_id) for run in runs])
            rows = [
                run_row(
                    loaded,
                    customer_id=run.row.customer_id,
                    now=now,
                    explanation=run.explanation,
                    event_id=run.row.id,
                    source=WorkflowRun.Source.BACKFILL,
                )
                for run in runs
            ]
            before = WorkflowRun.objects.filter(
                workflow_id=loaded.id, event_id__in=[r["event_id"] for r in rows]
            ).count()
            pending = runs_insert(rows)
            created = len(rows) - before
            inserted = pending
        else:
            created = 0
        done = max(0.0, (page.last_occurred_at - backfill.start).total_seconds()) / span
        updates: dict[str, Any] = {
            "progress": min(done, 1.0),
            "events_considered": considered,
            "updated_at": now,
        }
        if runs:
            updates |= {
                "cursor_occurred_at": runs[-1].row.occurred_at,
                "cursor_event_id": runs[-1].row.id,
            }
        WorkflowBackfill.objects.filter(pk=backfill.pk).update(**updates)
        if created:
            WorkflowBackfill.objects.filter(pk=backfill.pk).update(
                runs_created=F("runs_created") + created
            )
        transaction.on_commit(lambda: runs_hand_on(inserted))
