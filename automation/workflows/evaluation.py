"""Evaluating claimed events: step 2 of the runner's protocol (automation.workflows.runner).

`events_evaluate_claimed(events)` runs inside the claim of due events (automation.due:
the events are locked with `FOR UPDATE SKIP LOCKED`, so two workers never evaluate
the same event, and their flag is cleared): it evaluates every triggered workflow
(pure engine), applies re-entry policies under a per-(workflow, customer) advisory
lock and inserts the matched WorkflowRuns (UNIQUE (event, workflow)) -- all in the
claim's transaction. A worker killed before the commit leaves the events pending
(the next claim takes them); after it, the runs exist.

One event never fails its batch: an event that cannot be evaluated (an instant
outside the years 1-9999 in UTC, stored before datetimes were validated; a
condition or fact that crashes on its data) gets one failed run per workflow its
type triggers, whose `error` says why and whose `explanation` holds
`EVALUATION_ERROR` (re-entry policies ignore such runs: the workflow was never
entered). Its flag is cleared with the others', so it is not tried again; the
other events of the batch are evaluated as usual. A database error still fails
the batch, which is retried (it is no event's fault).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import msgspec
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max

from automation.workflows.engine import evaluate, matches
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.selectors import (
    ActiveWorkflows,
    EventRow,
    LoadedWorkflow,
    active_workflows,
    batch_contexts,
)
from events_app.models import Event
from project.ids import new_public_id
from project.sql import fetch_all, insert_parts

logger = logging.getLogger(__name__)
_encode_json = msgspec.json.Encoder().encode

Status = WorkflowRun.Status
T = TypeVar("T")
# The explanation's key on a run that records why its event was not evaluated.
EVALUATION_ERROR = "evaluation_error"


def grace_period() -> timedelta:
    """How long a live worker has before the periodic jobs take its work over."""
    return timedelta(seconds=settings.HERALD_AUTOMATION_GRACE_SECONDS)


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


def reentry_allows(
    candidates: list[tuple[LoadedWorkflow, Any, T]], now: datetime
) -> list[tuple[LoadedWorkflow, Any, T]]:
    """Drop candidates that the workflow's re-entry policy forbids (race-free).

    A candidate is (workflow, what started it: anything with a `customer_id`, payload).
    Runs of broadcasts neither obey the policy nor count for it: a broadcast is an
    explicit send to everyone in a segment.
    """
    limited = [(w, e) for w, e, _ in candidates if w.reentry != Workflow.EVERY_EVENT]
    if not limited:
        return candidates
    keys = sorted({(w.id, e.customer_id) for w, e in limited})
    _advisory_locks(keys)
    last_run: dict[tuple[str, str], datetime] = {
        (row["workflow_id"], row["customer_id"]): row["last"]
        for row in WorkflowRun.objects.filter(
            workflow_id__in={k[0] for k in keys},
            customer_id__in={k[1] for k in keys},
            broadcast__isnull=True,
        )
        .exclude(explanation__has_key=EVALUATION_ERROR)  # not evaluated: never entered
        .order_by()
        .values("workflow_id", "customer_id")
        .annotate(last=Max("created_at"))
    }
    allowed = []
    for workflow, started_by, payload in candidates:
        if workflow.reentry != Workflow.EVERY_EVENT:
            key = (workflow.id, started_by.customer_id)
            previous = last_run.get(key)
            if previous is not None and (
                workflow.period_seconds is None
                or previous > now - timedelta(seconds=workflow.period_seconds)
            ):
                continue
            last_run[key] = now
        allowed.append((workflow, started_by, payload))
    return allowed


class Runnable(Protocol):
    """What a run is made from: a loaded workflow, or a Workflow row (broadcasts)."""

    id: str
    version: int
    actions: Any


def run_row(
    workflow: Runnable,
    *,
    customer_id: str,
    now: datetime,
    explanation: dict[str, Any],
    actions: list[dict[str, Any]] | None = None,
    **started_by: Any,
) -> dict[str, Any]:
    """A new run's row (WorkflowRun's columns as plain values). `started_by`: `event_id`,
    or the segment transition's or broadcast's columns and `trigger` (and `source` for a
    backfill's run)."""
    actions = workflow.actions if actions is None else actions
    return {
        "id": new_public_id(),
        "workflow_id": workflow.id,
        "event_id": None,
        "segment_membership_id": None,
        "segment_on": "",
        "broadcast_id": None,
        "trigger": None,
        "source": WorkflowRun.Source.LIVE,
        **started_by,
        "customer_id": customer_id,
        "workflow_version": workflow.version,
        "actions": actions,
        # A workflow without actions only records that it matched.
        "status": Status.PENDING if actions else Status.SUCCEEDED,
        "position": 0,
        "branch": None,
        "outcomes": [],
        "error": "",
        "explanation": explanation,
        # A live worker advances the run right after commit; if it
        # dies, the dispatcher takes over once this passes.
        "resume_at": now + grace_period() if actions else None,
        "created_at": now,
        "finished_at": None if actions else now,
    }


def _run(
    workflow: LoadedWorkflow, event: Any, now: datetime, explanation: dict[str, Any]
) -> dict[str, Any]:
    """A matched run's row for an event (one per match)."""
    return run_row(
        workflow,
        customer_id=event.customer_id,
        now=now,
        explanation=explanation,
        event_id=event.id,
    )


def _not_evaluated(
    workflow: LoadedWorkflow, event: Any, now: datetime, reason: str
) -> dict[str, Any]:
    """The failed run recording why `event` was not evaluated for `workflow`."""
    return {
        **_run(workflow, event, now, {EVALUATION_ERROR: reason}),
        "actions": [],
        "status": Status.FAILED,
        "error": f"Not evaluated: {reason}",
        "resume_at": None,
        "finished_at": now,
    }


def _crash(exc: Exception) -> str:
    return f"evaluating it failed ({exc.__class__.__name__}: {exc})."


def _contexts(
    events: Sequence[Event | EventRow],
    by_type: dict[str, list[LoadedWorkflow]],
    now: datetime,
    failed: dict[str, str],
) -> dict[str, Any]:
    """batch_contexts for `events`; if it crashes (outside the database: a database
    error fails the batch, to be retried), one event at a time, the crashing ones
    into `failed`."""
    try:
        return batch_contexts(events=events, workflows_by_type=by_type, now=now)
    except DatabaseError:
        raise
    except Exception:
        logger.exception("batch_contexts crashed; reading the batch one event at a time")
    contexts: dict[str, Any] = {}
    for event in events:
        try:
            contexts.update(batch_contexts(events=[event], workflows_by_type=by_type, now=now))
        except DatabaseError:
            raise
        except Exception as exc:
            failed[event.id] = _crash(exc)
    return contexts


def events_evaluate_claimed(
    *,
    events: Sequence[Event | EventRow],
    problems: dict[str, str],
    now: datetime,
    active: ActiveWorkflows | None = None,
    workflow_ids: set[str] | None = None,
) -> list[str]:
    """Evaluate claimed events (automation.due: locked, flag cleared, in the caller's
    transaction) against every active workflow their type triggers; returns the ids of
    the runs created that have actions to run. `active`: the active workflows, when
    the caller has read them already.

    `problems`: event id -> why it cannot be evaluated (failed runs say so). An event
    whose evaluation crashes gets failed runs saying why; the others are evaluated.
    `workflow_ids`: only these workflows (a merge's moved events, automation.identity).
    """
    by_type = (active or active_workflows()).by_type
    if workflow_ids is not None:
        by_type = {
            type_id: chosen
            for type_id, workflows in by_type.items()
            if (chosen := [w for w in workflows if w.id in workflow_ids])
        }
    triggered = [e for e in events if e.event_type_id in by_type]
    if not triggered:
        return []
    failed = {e.id: problems[e.id] for e in triggered if e.id in problems}
    contexts = _contexts([e for e in triggered if e.id not in failed], by_type, now, failed)
    candidates = []
    refused = []
    for event in triggered:
        workflows = by_type[event.event_type_id]
        if event.id in failed:
            refused += [_not_evaluated(w, event, now, failed[event.id]) for w in workflows]
            continue
        for workflow in workflows:
            try:
                # The quick answer first; the explanation only for a match.
                if matches(workflow.compiled, contexts[event.id]):
                    explanation = evaluate(workflow.compiled, contexts[event.id])
                    candidates.append((workflow, event, explanation.as_dict()))
            except Exception as exc:
                logger.exception("workflow %s crashed on event %s", workflow.id, event.id)
                refused.append(_not_evaluated(workflow, event, now, _crash(exc)))
    runs = [
        _run(workflow, event, now, explanation)
        for workflow, event, explanation in reentry_allows(candidates, now)
    ]
    # A run that exists already (the unique (event, workflow) pair) is skipped by
    # the database; only the inserted runs that have actions to run come back.
    return runs_insert([*runs, *refused]) if runs or refused else []


def runs_insert(runs: list[dict[str, Any]]) -> list[str]:
    """Insert `runs` (dicts of every WorkflowRun column by attname), skipping any that
    one of the run's unique keys has already (an event, a segment transition, a
    broadcast's customer, per workflow); returns the ids, in id order, of the inserted
    runs that are pending (have actions to run).

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
        'ON CONFLICT DO NOTHING RETURNING "id", "status"'
    )
