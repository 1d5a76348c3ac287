"""Background work of workflows: run actions, resume waits (evaluation: automation.due).

The protocol (each step idempotent, safe on many workers at once):

1. Ingestion flags events whose type triggers an active workflow
   (`Event.automation_pending`, written by the insert itself: automation.ingest
   plans it) and, after commit, wakes the claimer of due events (automation.due).
2. The claimer locks a batch of pending events, clears their flag and evaluates
   every triggered workflow (`events_evaluate_claimed`, automation.workflows.evaluation:
   pure engine, the matched WorkflowRuns inserted) -- all in one transaction; an
   event that cannot be evaluated gets failed runs saying why and never fails the
   others of its batch. After commit the new runs are handed on (`runs_hand_on`).
3. `workflow_run_advance(run_id)` (its own task per run) runs the actions from `position`, one
   transaction per action: lock the run row (SKIP LOCKED), perform the action,
   record its outcome and advance `position` — so an action's effect commits
   exactly once with the run's progress. A wait stores `resume_at` and stops.
4. `workflow_runs_dispatch_due(now)` (periodic) resumes waiting runs that are
   due and pending runs a killed worker left behind (their `resume_at` is set
   to creation + grace, so a live worker normally finishes them first).
5. Events whose claim was lost (a lost wake-up, a killed worker) are claimed by the
   periodic job of the claimer (automation.due).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.actions import ActionContext, ActionFailed
from automation.workflows.evaluation import grace_period
from automation.workflows.models import WorkflowRun
from automation.workflows.policies.services import PolicyBlocked, policy_admit
from automation.workflows.policies.spec import DEFERRED, Verdict
from automation.workflows.splits import Step, run_steps, split_index
from project import background

logger = logging.getLogger(__name__)

# The runner's task (automation.workflows.tasks), enqueued by name through
# project.background.
ADVANCE_TASK = "automation.advance_workflow_run"

Status = WorkflowRun.Status


# ---------------------------------------------------------------- 2. after evaluation


def runs_hand_on(run_ids: list[str]) -> None:
    """Hand new runs' actions on, one task per run: a batch's evaluation is never held
    up by its actions, and the actions of a busy batch spread over every worker. A run
    whose task is lost is resumed by `workflow_runs_dispatch_due` (its resume_at)."""
    if run_ids:
        background.enqueue_many(ADVANCE_TASK, [(run_id,) for run_id in run_ids])


# ---------------------------------------------------------------- 3. running actions


def _outcome(step: Step, status: str, now: datetime, **extra: Any) -> dict[str, Any]:
    return {
        **step.location(),
        "type": step.spec.get("type"),
        "status": status,
        "at": now.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def _path(step: Step, actions: list[dict[str, Any]]) -> str:
    """Where the action lives, as the workflow's validation errors name it."""
    if step.branch is None:
        return f"actions[{step.index}]"
    return f"actions[{split_index(actions)}].branches[{step.branch}].actions[{step.index}]"


def _step(run_id: str, now: datetime) -> bool:
    """Perform the run's next action in one transaction; True when there is more to do."""
    with transaction.atomic():
        run = (
            WorkflowRun.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow", "workflow__delivery_policy")
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
        steps = run_steps(run.actions, run.branch)
        if run.position >= len(steps):
            run.status, run.finished_at, run.resume_at = Status.SUCCEEDED, now, None
            run.save(update_fields=["status", "finished_at", "resume_at"])
            return False
        index = run.position
        step = steps[index]
        spec = step.spec
        handler = ACTIONS.get(spec.get("type", ""))
        ctx = ActionContext(run=run, now=now)
        verdict: Verdict | None = None
        try:
            if handler is None:
                raise ActionFailed(f"Unknown action type {spec.get('type')!r}.")
            # A failed action's writes roll back alone, with what its policy check took.
            with transaction.atomic():
                # The delivery policy (caps, quiet hours): the one place it is checked.
                verdict = policy_admit(run=run, action=spec, now=now)
                if verdict is None or verdict.allowed:
                    result = handler().execute(ctx, spec)
        except PolicyBlocked as blocked:
            verdict = blocked.verdict  # what the check took is rolled back
        except Exception as exc:
            if not isinstance(exc, ActionFailed):
                logger.exception("workflow run %s: action %s crashed", run.id, index)
            message = str(exc) or exc.__class__.__name__
            run.outcomes = [*run.outcomes, _outcome(step, "failed", now, error=message)]
            run.status, run.error, run.finished_at, run.resume_at = (
                Status.FAILED,
                f"{_path(step, run.actions)} ({spec.get('type')}): {message}",
                now,
                None,
            )
            run.save(update_fields=["outcomes", "status", "error", "finished_at", "resume_at"])
            return False
        if verdict is not None and not verdict.allowed:
            return _blocked(run, step, len(steps), verdict, now)
        run.outcomes = [
            *run.outcomes,
            _outcome(step, "succeeded", now, detail=result.detail),
        ]
        run.position = index + 1
        if result.branch is not None:
            run.branch = result.branch
            steps = run_steps(run.actions, run.branch)
        if result.resume_at is not None:
            run.status, run.resume_at = Status.WAITING, result.resume_at
        elif run.position >= len(steps):
            # The last action: finish in the same transaction.
            run.status, run.resume_at, run.finished_at = Status.SUCCEEDED, None, now
        else:
            run.status, run.resume_at = Status.PENDING, now + grace_period()
        run.save(
            update_fields=["outcomes", "position", "branch", "status", "resume_at", "finished_at"]
        )
        return run.status == Status.PENDING


def _blocked(run: WorkflowRun, step: Step, steps: int, verdict: Verdict, now: datetime) -> bool:
    """Record an action the delivery policy blocked. A deferred one waits, durably like
    a wait action, and is judged again when the run resumes; a capped or skipped one
    is passed over and the run goes on. True when there is more to do now."""
    detail = {} if verdict.resume_at is None else {"resume_at": verdict.resume_at.isoformat()}
    run.outcomes = [
        *run.outcomes,
        _outcome(step, verdict.status, now, reason=verdict.reason, detail=detail),
    ]
    if verdict.status == DEFERRED and verdict.resume_at is not None:
        run.status, run.resume_at = Status.WAITING, verdict.resume_at
    else:
        run.position += 1
        if run.position >= steps:
            run.status, run.resume_at, run.finished_at = Status.SUCCEEDED, None, now
        else:
            run.status, run.resume_at = Status.PENDING, now + grace_period()
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


def automation_tick(now: datetime | None = None) -> int:
    """The periodic job (project.background): resume due runs."""
    return workflow_runs_dispatch_due(now=now)
