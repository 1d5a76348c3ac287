"""Background work of workflows: evaluate events, run actions, sweep, resume waits.

The protocol (each step idempotent, safe on many workers at once):

1. Ingestion flags events whose type triggers an active workflow
   (`Event.automation_pending`, written by the insert itself: automation.ingest
   plans it) and, after commit, enqueues their ids (`enqueue_evaluation`).
2. `events_evaluate(event_ids)` locks the still-pending events
   (`FOR UPDATE SKIP LOCKED`: two workers never evaluate the same event),
   evaluates every triggered workflow (pure engine), applies re-entry
   policies under a per-(workflow, customer) advisory lock, inserts the
   matched WorkflowRuns (UNIQUE (event, workflow)) and clears the flag — all in
   one transaction. A worker killed before the commit leaves the events
   pending (the sweeper re-enqueues them); after it, the runs exist.
3. `workflow_run_advance(run_id)` (its own task per run) runs the actions from `position`, one
   transaction per action: lock the run row (SKIP LOCKED), perform the action,
   record its outcome and advance `position` — so an action's effect commits
   exactly once with the run's progress. A wait stores `resume_at` and stops.
4. `workflow_runs_dispatch_due(now)` (periodic) resumes waiting runs that are
   due and pending runs a killed worker left behind (their `resume_at` is set
   to creation + grace, so a live worker normally finishes them first).
5. `events_sweep_pending(now)` (periodic) re-enqueues events still pending
   after the grace period (a lost broker message, a killed worker).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.actions import ActionContext, ActionFailed
from automation.workflows.engine import evaluate, matches
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.selectors import (
    EventRow,
    LoadedWorkflow,
    active_workflows,
    batch_contexts,
)
from events_app.models import Event
from project import background
from project.ids import new_public_id
from project.sql import fetch_all, insert_parts

logger = logging.getLogger(__name__)

# The runner's tasks (automation.workflows.tasks), enqueued by name through
# project.background.
EVALUATE_TASK = "automation.evaluate_events"
ADVANCE_TASK = "automation.advance_workflow_run"
_encode_json = msgspec.json.Encoder().encode

Status = WorkflowRun.Status


def _grace() -> timedelta:
    return timedelta(seconds=settings.HERALD_AUTOMATION_GRACE_SECONDS)


# ---------------------------------------------------------------- 1. ingestion hook


def enqueue_evaluation(event_ids: list[str]) -> None:
    """Hand event ids to the background-work layer in batches (never evaluate inline)."""
    size = settings.HERALD_AUTOMATION_BATCH_SIZE
    for start in range(0, len(event_ids), size):
        background.enqueue(EVALUATE_TASK, event_ids[start : start + size])


# ---------------------------------------------------------------- 2. evaluation


def _lock_key(workflow_id: str, customer_id: str) -> int:
    digest = hashlib.blake2b(f"{workflow_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _advisory_locks(keys: list[tuple[str, str]]) -> None:
    """Serialize re-entry decisions per (workflow, customer) until commit.

    Sorted, so two workers needing overlapping keys cannot deadlock. SQLite
    (the embedded default) serializes write transactions anyway.
    """
    if connection.vendor != "postgresql" or not keys:
        return
    ints = sorted({_lock_key(w, c) for w, c in keys})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(%s::bigint[]) AS t(k) ORDER BY k) AS s",
            [ints],
        )


def _reentry_allows(
    candidates: list[tuple[LoadedWorkflow, Any, dict[str, Any]]], now: datetime
) -> list[tuple[LoadedWorkflow, Any, dict[str, Any]]]:
    """Drop candidates that the workflow's re-entry policy forbids (race-free)."""
    limited = [(w, e) for w, e, _ in candidates if w.reentry != Workflow.EVERY_EVENT]
    if not limited:
        return candidates
    keys = sorted({(w.id, e.customer_id) for w, e in limited})
    _advisory_locks(keys)
    last_run: dict[tuple[str, str], datetime] = {
        (row["workflow_id"], row["customer_id"]): row["last"]
        for row in WorkflowRun.objects.filter(
            workflow_id__in={k[0] for k in keys}, customer_id__in={k[1] for k in keys}
        )
        .order_by()
        .values("workflow_id", "customer_id")
        .annotate(last=Max("created_at"))
    }
    allowed = []
    for workflow, event, explanation in candidates:
        if workflow.reentry != Workflow.EVERY_EVENT:
            key = (workflow.id, event.customer_id)
            previous = last_run.get(key)
            if previous is not None and (
                workflow.period_seconds is None
                or previous > now - timedelta(seconds=workflow.period_seconds)
            ):
                continue
            last_run[key] = now
        allowed.append((workflow, event, explanation))
    return allowed


def events_evaluate(*, event_ids: list[str], now: datetime | None = None) -> list[str]:
    """Evaluate a batch of pending events; returns the ids of the runs created.

    Events already evaluated, or locked by another worker, are skipped.
    """
    now = now or timezone.now()
    cache = active_workflows()
    with transaction.atomic():
        events = pending_events_claim(event_ids=event_ids)
        if not events:
            return []
        contexts = batch_contexts(events=events, workflows_by_type=cache.by_type, now=now)
        candidates = []
        for event in events:
            context = contexts[event.id]
            for workflow in cache.by_type.get(event.event_type_id, ()):
                # The quick answer first; the explanation only for a match.
                if matches(workflow.compiled, context):
                    explanation = evaluate(workflow.compiled, context)
                    candidates.append((workflow, event, explanation.as_dict()))
        runs = [
            # Plain values (WorkflowRun's columns), not model instances: one per match.
            {
                "id": new_public_id(),
                "workflow_id": workflow.id,
                "event_id": event.id,
                "customer_id": event.customer_id,
                "workflow_version": workflow.version,
                "actions": workflow.actions,
                # A workflow without actions only records that it matched.
                "status": Status.PENDING if workflow.actions else Status.SUCCEEDED,
                "position": 0,
                "outcomes": [],
                "error": "",
                "explanation": explanation,
                # A live worker advances the run right after commit; if it
                # dies, the dispatcher takes over once this passes.
                "resume_at": now + _grace() if workflow.actions else None,
                "created_at": now,
                "finished_at": None if workflow.actions else now,
            }
            for workflow, event, explanation in _reentry_allows(candidates, now)
        ]
        # A run that exists already (the unique (event, workflow) pair) is skipped by
        # the database; only the inserted runs that have actions to run come back.
        return runs_insert(runs) if runs else []


def pending_events_claim(*, event_ids: list[str]) -> Sequence[Event | EventRow]:
    """Lock the still-pending events of `event_ids` and clear their flag, in the caller's
    transaction (a rollback restores it); returns them ordered by id.

    `FOR UPDATE SKIP LOCKED`: an event another worker is evaluating is skipped. On
    PostgreSQL one statement locks, clears and returns the rows (where a SELECT then
    an UPDATE took two round trips and built a model instance per event).
    """
    if connection.vendor != "postgresql":
        events = list(
            Event.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=event_ids, automation_pending=True)
            .order_by("pk")
        )
        Event.objects.filter(pk__in=[e.id for e in events]).update(automation_pending=False)
        return events
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_EVENTS_SQL, [event_ids])
        rows = cursor.fetchall()
    claimed = [
        EventRow(
            id=row[0],
            event_type_id=row[1],
            customer_id=row[2],
            external_id=row[3],
            secondary_external_id=row[4],
            # Django's psycopg setup hands jsonb over as text (JSONField decodes it).
            data=json.loads(row[5]) if isinstance(row[5], str) else row[5],
            occurred_at=row[6],
            created_at=row[7],
            depth=row[8],
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda e: e.id)


_CLAIM_EVENTS_SQL = """
UPDATE events_app_event AS e SET automation_pending = false
FROM (
    SELECT id FROM events_app_event
    WHERE id = ANY(%s) AND automation_pending
    ORDER BY id FOR UPDATE SKIP LOCKED
) AS claimed
WHERE e.id = claimed.id
RETURNING e.id, e.event_type_id, e.customer_id, e.external_id, e.secondary_external_id,
    e.data, e.occurred_at, e.created_at, e.depth
"""


def runs_insert(runs: list[dict[str, Any]]) -> list[str]:
    """Insert `runs` (dicts of every WorkflowRun column by attname), skipping any whose
    (event, workflow) pair exists; returns the ids, in id order, of the inserted runs
    that are pending (have actions to run).

    On PostgreSQL one INSERT … SELECT from a JSON recordset with ON CONFLICT DO NOTHING
    RETURNING (as ingestion does, events_app.ingest_pg): bulk_create plus a SELECT of
    the inserted ids cost a third of an evaluation batch's time in the ORM.
    """
    if connection.vendor != "postgresql":
        WorkflowRun.objects.bulk_create([WorkflowRun(**r) for r in runs], ignore_conflicts=True)
        return list(
            WorkflowRun.objects.filter(
                pk__in=[r["id"] for r in runs if r["status"] == Status.PENDING]
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    rows = fetch_all(_insert_runs_sql(), [_encode_json(runs).decode()])
    return sorted(run_id for run_id, status in rows if status == Status.PENDING)


@functools.cache
def _insert_runs_sql() -> str:
    every = [f.attname for f in WorkflowRun._meta.concrete_fields]
    parts = insert_parts(WorkflowRun, per_row=every, alias="r")
    return (
        f"INSERT INTO {connection.ops.quote_name(WorkflowRun._meta.db_table)} "  # noqa: S608
        f"({parts.columns}) SELECT {parts.values} "
        f"FROM json_to_recordset(%s::json) AS r({parts.recordset}) "
        'ON CONFLICT ("event_id", "workflow_id") DO NOTHING RETURNING "id", "status"'
    )


def events_evaluate_and_run(*, event_ids: list[str]) -> int:
    """Worker entry point: evaluate a batch, then hand the new runs' actions on.

    Actions run as their own tasks (one per run), so a batch's evaluation is
    never held up by its actions and the actions of a busy batch spread over
    every worker. Returns how many runs were handed on.
    """
    run_ids = events_evaluate(event_ids=event_ids)
    if run_ids:
        background.enqueue_many(ADVANCE_TASK, [(run_id,) for run_id in run_ids])
    return len(run_ids)


# ---------------------------------------------------------------- 3. running actions


def _outcome(
    index: int, spec: dict[str, Any], status: str, now: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "index": index,
        "type": spec.get("type"),
        "status": status,
        "at": now.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def _step(run_id: str, now: datetime) -> bool:
    """Perform the run's next action in one transaction; True when there is more to do."""
    with transaction.atomic():
        run = (
            WorkflowRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow")
            .filter(pk=run_id, status__in=[Status.PENDING, Status.WAITING])
            .first()
        )
        if run is None:
            return False  # finished, or another worker holds it
        if run.status == Status.WAITING and run.resume_at and run.resume_at > now:
            return False
        if not run.workflow.active:
            # Created from a cached copy after workflow_set_active cancelled the rest.
            run.cancel(now)
            return False
        if run.position >= len(run.actions):
            run.status, run.finished_at, run.resume_at = Status.SUCCEEDED, now, None
            run.save(update_fields=["status", "finished_at", "resume_at"])
            return False
        index = run.position
        spec = run.actions[index]
        handler = ACTIONS.get(spec.get("type", ""))
        ctx = ActionContext(run=run, now=now)
        try:
            if handler is None:
                raise ActionFailed(f"Unknown action type {spec.get('type')!r}.")
            with transaction.atomic():  # a failed action's writes roll back alone
                result = handler().execute(ctx, spec)
        except Exception as exc:
            if not isinstance(exc, ActionFailed):
                logger.exception("workflow run %s: action %s crashed", run.id, index)
            message = str(exc) or exc.__class__.__name__
            run.outcomes = [*run.outcomes, _outcome(index, spec, "failed", now, error=message)]
            run.status, run.error, run.finished_at, run.resume_at = (
                Status.FAILED,
                f"actions[{index}] ({spec.get('type')}): {message}",
                now,
                None,
            )
            run.save(update_fields=["outcomes", "status", "error", "finished_at", "resume_at"])
            return False
        run.outcomes = [
            *run.outcomes,
            _outcome(index, spec, "succeeded", now, detail=result.detail),
        ]
        run.position = index + 1
        if result.resume_at is not None:
            run.status, run.resume_at = Status.WAITING, result.resume_at
        elif run.position >= len(run.actions):
            # The last action: finish in the same transaction.
            run.status, run.resume_at, run.finished_at = Status.SUCCEEDED, None, now
        else:
            run.status, run.resume_at = Status.PENDING, now + _grace()
        run.save(update_fields=["outcomes", "position", "status", "resume_at", "finished_at"])
        return run.status == Status.PENDING


def workflow_run_advance(*, run_id: str, now: Callable[[], datetime] | None = None) -> None:
    """Run a run's actions from its position until it finishes, fails or waits."""
    clock = now or timezone.now
    while _step(run_id, clock()):
        pass


# ---------------------------------------------------------------- 4./5. periodic jobs


def workflow_runs_due(*, now: datetime, limit: int) -> list[str]:
    """Unfinished runs whose resume_at has passed (waits, and orphans of killed workers)."""
    return list(
        WorkflowRun.objects.filter(status__in=[Status.PENDING, Status.WAITING], resume_at__lte=now)
        .order_by("resume_at")
        .values_list("pk", flat=True)[:limit]
    )


def workflow_runs_dispatch_due(*, now: datetime | None = None) -> int:
    """Periodic: hand every due run to the background-work layer; returns how many."""
    now = now or timezone.now()
    run_ids = workflow_runs_due(now=now, limit=settings.HERALD_AUTOMATION_DISPATCH_CHUNK)
    if run_ids:
        background.enqueue_many(ADVANCE_TASK, [(run_id,) for run_id in run_ids])
    return len(run_ids)


def events_pending_automation(*, older_than: datetime, limit: int) -> list[str]:
    """Events still flagged for automation since before `older_than` (partial index)."""
    return list(
        Event.objects.filter(automation_pending=True, created_at__lt=older_than)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def events_sweep_pending(*, now: datetime | None = None) -> int:
    """Periodic: re-enqueue events whose evaluation was lost; returns how many."""
    now = now or timezone.now()
    event_ids = events_pending_automation(
        older_than=now - _grace(), limit=settings.HERALD_AUTOMATION_DISPATCH_CHUNK
    )
    if event_ids:
        enqueue_evaluation(event_ids)
    return len(event_ids)


def automation_tick(now: datetime | None = None) -> int:
    """The periodic job (project.background): sweep lost evaluations, resume due runs."""
    return events_sweep_pending(now=now) + workflow_runs_dispatch_due(now=now)
