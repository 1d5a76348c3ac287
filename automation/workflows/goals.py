"""Goals: an event that ends a customer's unfinished runs of a workflow as converted.

A workflow's `goal` is `{"event_type": key or id, "conditions": tree}` (the tree is
optional and judged against the goal event, like a workflow's conditions against its
trigger). Ingestion flags events of goal types for the claimer (automation.ingest,
`ActiveWorkflows.due_type_ids`); the claimer calls `goals_reach` in its transaction,
right after the claim (automation.due), so that:

1. the goal events' contexts are read for the whole batch (selectors.batch_contexts)
   and each goal of an active workflow is judged (pure engine);
2. the unfinished runs (pending or waiting) of the reached (workflow, customer) pairs
   are locked in one SELECT … FOR UPDATE, in id order (two claimers cannot deadlock
   on them), and written in one UPDATE: status `converted`, each action not performed
   yet recorded as `skipped` with the reason, finished.

The run row is the arbiter of a run resuming from its wait at the same moment: the
runner performs an action under the run's row lock and only on a pending or waiting
run; the goal's lock waits for that action to commit and then re-reads the status.
So each action is either performed or recorded skipped, never both; a run that
finished meanwhile stays as it ended. Runs are locked before the segment refresh
locks customers (the runner's actions lock a customer while holding their run), so
the two cannot wait on each other in a cycle.

With no active workflow having a goal this costs nothing: no query, no flag.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Q

from automation.workflows.conditions import trees as condition_trees
from automation.workflows.engine import matches
from automation.workflows.models import WorkflowRun
from automation.workflows.selectors import ActiveWorkflows, EventRow, batch_contexts
from automation.workflows.splits import remaining_steps
from events_app.models import Event, EventType

logger = logging.getLogger(__name__)

Status = WorkflowRun.Status
MAX_REF = 64  # an event type's key or id
GOAL_SHAPE = '{"event_type": a key or id, "conditions": an optional condition tree}'


def goal_reason(label: str) -> str:
    """Why the actions after a goal were skipped (an outcome's `reason`)."""
    return f"skipped: the customer converted (goal {label})"


# ---------------------------------------------------------------- validation


def goal_check(goal: Any, errors: dict[str, list[str]]) -> dict[str, Any] | None:
    """Problems of a workflow's `goal` go into `errors` by path; returns the goal to store
    (None: no goal)."""
    if goal is None:
        return None
    if (
        not isinstance(goal, dict)
        or "event_type" not in goal
        or set(goal)
        - {
            "event_type",
            "conditions",
        }
    ):
        errors.setdefault("goal", []).append(f"Must be null or {GOAL_SHAPE}.")
        return None
    ref = goal["event_type"]
    if (
        not isinstance(ref, str)
        or len(ref) > MAX_REF
        or not EventType.objects.filter(Q(key=ref) | Q(pk=ref)).exists()
    ):
        errors.setdefault("goal.event_type", []).append(
            f"Unknown event type {ref!r} (give a key or an id)."
        )
    conditions = goal.get("conditions")
    if conditions is None:
        conditions = {}
    if not isinstance(conditions, dict):
        errors.setdefault("goal.conditions", []).append("Must be a condition tree (an object).")
        return None
    try:
        condition_trees.validate(conditions, root="goal.conditions")
    except condition_trees.ConditionError as exc:
        for path, messages in exc.errors.items():
            errors.setdefault(path, []).extend(messages)
    return {"event_type": ref, "conditions": conditions}


# ---------------------------------------------------------------- reaching goals


def goals_reach(
    *,
    events: Sequence[Event | EventRow],
    problems: dict[str, str],
    workflows: ActiveWorkflows,
    now: datetime,
) -> int:
    """Convert the unfinished runs whose workflow's goal these claimed events reach (in
    the claim's transaction; see the module's docstring); returns how many runs."""
    if not workflows.by_goal_type:
        return 0
    goal_events = [
        e for e in events if e.event_type_id in workflows.by_goal_type and e.id not in problems
    ]
    if not goal_events:
        return 0
    reached = _reached(goal_events, workflows, now)
    if not reached:
        return 0
    runs = list(
        WorkflowRun.objects.select_for_update(of=("self",))
        .filter(
            workflow_id__in={w for w, _ in reached},
            customer_id__in={c for _, c in reached},
            status__in=[Status.PENDING, Status.WAITING],
        )
        .order_by("pk")
        .only("pk", "workflow_id", "customer_id", "actions", "branch", "position", "outcomes")
    )
    converted = [run for run in runs if (run.workflow_id, run.customer_id) in reached]
    for run in converted:
        _convert(run, reached[(run.workflow_id, run.customer_id)], now)
    if converted:
        WorkflowRun.objects.bulk_update(
            converted, ["status", "outcomes", "resume_at", "finished_at"]
        )
    return len(converted)


def _reached(
    events: list[Event | EventRow], workflows: ActiveWorkflows, now: datetime
) -> dict[tuple[str, str], str]:
    """(workflow id, customer id) -> the goal's label, for every goal an event reaches.
    An event whose goal conditions cannot be judged (its facts or a leaf crash) reaches
    nothing: it is logged, and the batch goes on."""
    goals = workflows.by_goal_type
    try:
        contexts = batch_contexts(events=events, workflows_by_type=goals, now=now)
    except DatabaseError:
        raise  # no event's fault: the batch fails and is retried
    except Exception:
        if len(events) == 1:
            logger.exception("goal facts of event %s could not be read", events[0].id)
            return {}
        reached: dict[tuple[str, str], str] = {}
        for event in events:
            reached.update(_reached([event], workflows, now))
        return reached
    reached = {}
    for event in events:
        for goal in goals[event.event_type_id]:
            try:
                if matches(goal.compiled, contexts[event.id]):
                    reached[(goal.workflow_id, event.customer_id)] = goal.label
            except Exception:
                logger.exception(
                    "goal of workflow %s crashed on event %s", goal.workflow_id, event.id
                )
    return reached


def _convert(run: WorkflowRun, label: str, now: datetime) -> None:
    at = now.isoformat().replace("+00:00", "Z")
    reason = goal_reason(label)
    skipped = [
        {
            **step.location(),
            "type": step.spec.get("type"),
            "status": "skipped",
            "at": at,
            "reason": reason,
        }
        for step in remaining_steps(run.actions, run.branch, run.position)
    ]
    run.status = Status.CONVERTED
    run.outcomes = [*run.outcomes, *skipped]
    run.resume_at = None
    run.finished_at = now
