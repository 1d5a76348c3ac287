"""Writes of simulations and backfills: create the row, run it (one item per call).

Simulation protocol:

1. `simulation_create` validates the request (a saved workflow by id, or a workflow
   body validated as POST /workflows validates it; a period of at most MAX_DAYS),
   stores a Simulation row and, when the period holds at most SMALL_RANGE triggered
   events (a count that stops there), replays it at once; otherwise it hands the row
   to a background task after commit.
2. `simulation_run(simulation_id)` (the task) replays the period page by page,
   writing progress (and the row's heartbeat, `updated_at`) after each page, then
   the result. It writes nothing else: no run, no delivery, no event.
3. `simulations_resume_stale` (periodic) hands on again the running simulations
   whose heartbeat stopped (a killed worker, a lost message): the replay restarts
   from the period's start (it is a function of the stored events, so the answer
   is the same).

Backfill protocol: `backfill_create` stores a WorkflowBackfill (its watermark: now)
and hands it on; `backfill_run` replays the period up to the watermark and inserts
each page's runs (`source` backfill; ON CONFLICT DO NOTHING on the run's unique
(event, workflow)) with the page's cursor in one transaction, the runs' actions handed
on after commit; `backfills_resume_stale` resumes a backfill whose worker died.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from automation.workflows.evaluation import _advisory_locks, run_row, runs_insert
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.selectors import delivery_policy_find
from automation.workflows.policies.spec import PolicySpec, policy_spec_of
from automation.workflows.runner import runs_hand_on
from automation.workflows.selectors import LoadedWorkflow, workflow_get
from automation.workflows.services import WorkflowInput, workflow_validate
from automation.workflows.simulation import setbased
from automation.workflows.simulation.models import Simulation, WorkflowBackfill
from automation.workflows.simulation.replay import Page, Replay, ReplayedRun, ReplaySpec, Tally
from events_app.models import Event, EventType
from project import background
from project.errors import ConflictError, ValidationFailed

logger = logging.getLogger(__name__)

SIMULATE_TASK = "automation.simulate_workflow"
BACKFILL_TASK = "automation.backfill_workflow"
# A period with at most this many triggered events is replayed in the request.
SMALL_RANGE = 10_000
MAX_DAYS = 366
# A running row whose heartbeat is older than this is taken over by the sweeper.
STALE_AFTER = timedelta(minutes=5)
# Trees of frequency leaves only are replayed in one statement (simulation.setbased).
SET_BASED = True
UNSAVED_NAME = "Simulation"
CAPS_NOT_SIMULATED = "The workflow's delivery policy could not be read, so caps were not simulated."

Status = Simulation.Status


@dataclass
class Target:
    """A workflow to replay: compiled, with its triggers and policy."""

    loaded: LoadedWorkflow
    trigger_type_ids: frozenset[str]
    saved_workflow_id: str | None
    policy: PolicySpec | None
    notes: list[str]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _policy_of(workflow: Workflow, notes: list[str]) -> PolicySpec | None:
    """The workflow's delivery policy as a spec."""
    policy = workflow.delivery_policy
    if policy is None:
        return None
    try:
        return policy_spec_of(
            {
                "key": policy.key,
                "caps": policy.caps,
                "quiet_hours": policy.quiet_hours,
                "on_blocked": policy.on_blocked,
            }
        )
    except (AttributeError, ValueError, KeyError, TypeError):
        notes.append(CAPS_NOT_SIMULATED)
        return None


def _type_ids() -> dict[str, str]:
    return dict(EventType.objects.values_list("key", "id"))


def _saved_target(workflow: Workflow) -> Target:
    notes: list[str] = []
    return Target(
        loaded=LoadedWorkflow.of(workflow, type_ids=_type_ids()),
        trigger_type_ids=frozenset(t.pk for t in workflow.trigger_event_types.all()),
        saved_workflow_id=workflow.pk,
        policy=_policy_of(workflow, notes),
        notes=notes,
    )


def _unsaved_target(body: dict[str, Any]) -> Target:
    """A workflow body validated as POST /workflows validates one (nothing stored)."""
    data = WorkflowInput(**{**body, "name": body.get("name") or UNSAVED_NAME})
    errors, types = workflow_validate(data)
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(
            f"Invalid workflow: {path}: {messages[0]}",
            details={f"workflow.{p}" if p else "workflow": m for p, m in errors.items()},
        )
    unsaved = Workflow(
        name=data.name or UNSAVED_NAME,
        conditions=data.conditions or {},
        actions=data.actions or [],
        reentry=data.reentry or Workflow.EVERY_EVENT,
    )
    if isinstance(data.delivery_policy, str):
        unsaved.delivery_policy = delivery_policy_find(ref=data.delivery_policy)
    notes: list[str] = []
    return Target(
        loaded=LoadedWorkflow.of(unsaved, type_ids=_type_ids()),
        trigger_type_ids=frozenset(t.pk for t in types),
        saved_workflow_id=None,
        policy=_policy_of(unsaved, notes),
        notes=notes,
    )


def _target(params: dict[str, Any]) -> Target:
    if params.get("workflow_id"):
        return _saved_target(workflow_get(workflow_id=params["workflow_id"]))
    return _unsaved_target(params["workflow"])


def _check_period(start: datetime, end: datetime, *, field: str = "from") -> None:
    if start >= end:
        raise ValidationFailed(
            "'from' must be before 'to'.", details={field: ["Must be before 'to'."]}
        )
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(
            f"The period must be at most {MAX_DAYS} days.",
            details={"to": [f"At most {MAX_DAYS} days after 'from'."]},
        )


def _small(target: Target, start: datetime, end: datetime, created_before: datetime | None) -> bool:
    """Does the period hold at most SMALL_RANGE triggered events? (Counts no further.)"""
    queryset = Event.objects.filter(
        event_type_id__in=target.trigger_type_ids, occurred_at__gte=start, occurred_at__lt=end
    )
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=created_before)
    return queryset.order_by()[: SMALL_RANGE + 1].count() <= SMALL_RANGE


# ---------------------------------------------------------------- simulations


def simulation_create(
    *,
    start: datetime,
    end: datetime,
    workflow_id: str | None = None,
    workflow: dict[str, Any] | None = None,
) -> Simulation:
    """Validate and store a simulation; replay it now when the period is small, else
    hand it to a background task (the row says `running` until then)."""
    if (workflow_id is None) == (workflow is None):
        raise ValidationFailed(
            "Give exactly one of workflow_id or workflow.",
            details={"workflow_id": ["Give exactly one of workflow_id or workflow."]},
        )
    _check_period(start, end)
    params: dict[str, Any] = {"from": _iso(start), "to": _iso(end)}
    if workflow_id is not None:
        params["workflow_id"] = workflow_id
    else:
        params["workflow"] = workflow
    target = _target(params)
    if not target.trigger_type_ids:
        raise ValidationFailed(
            "A simulation replays events: the workflow needs trigger_event_types.",
            details={"workflow.trigger_event_types": ["Give at least one event type."]},
        )
    simulation = Simulation.objects.create(workflow_id=target.saved_workflow_id, params=params)
    if _small(target, start, end, None):
        _simulate(simulation, target)
        simulation.refresh_from_db()
    else:
        transaction.on_commit(lambda: background.enqueue(SIMULATE_TASK, simulation.pk))
    return simulation


def _claim(simulation_id: str, now: datetime) -> Simulation | None:
    """Take a running simulation: a heartbeat now, unless another worker beat it lately."""
    taken = Simulation.objects.filter(pk=simulation_id, status=Status.RUNNING).update(
        updated_at=now
    )
    return Simulation.objects.filter(pk=simulation_id).first() if taken else None


def simulation_run(*, simulation_id: str) -> bool:
    """The task: replay a running simulation to its result; False if there was nothing
    to do (finished already, or deleted)."""
    simulation = _claim(simulation_id, timezone.now())
    if simulation is None:
        return False
    try:
        target = _target(simulation.params)
    except Exception as exc:  # the workflow was deleted or no longer validates
        _fail(simulation, exc)
        return True
    _simulate(simulation, target)
    return True


def _period(params: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(params["from"]), datetime.fromisoformat(params["to"])


def _simulate(simulation: Simulation, target: Target) -> None:
    start, end = _period(simulation.params)
    spec = ReplaySpec(
        workflow=target.loaded,
        trigger_type_ids=target.trigger_type_ids,
        saved_workflow_id=target.saved_workflow_id,
        policy=target.policy,
    )
    replay = Replay(spec, start=start, end=end)
    try:
        if SET_BASED and setbased.applicable(spec):
            found = setbased.set_based_result(spec, start=start, end=end)
        else:
            found = _streamed(simulation, replay, start, end)
    except Exception as exc:
        logger.exception("simulation %s failed", simulation.pk)
        _fail(simulation, exc)
        return
    funnel = found["leaves"]
    filtering = max(funnel, key=lambda leaf: leaf["evaluated"] - leaf["matched"], default=None)
    result = {
        **found,
        "filtered_out_most": (
            filtering["path"]
            if filtering and filtering["evaluated"] > filtering["matched"]
            else None
        ),
        "caps_simulated": target.policy is not None and bool(target.policy.caps),
        "notes": [*target.notes, *replay.notes()],
    }
    result.setdefault("capped", 0)
    now = timezone.now()
    Simulation.objects.filter(pk=simulation.pk, status=Status.RUNNING).update(
        status=Status.DONE,
        progress=1.0,
        events_considered=found["events_considered"],
        result=result,
        updated_at=now,
        finished_at=now,
    )


def _streamed(
    simulation: Simulation, replay: Replay, start: datetime, end: datetime
) -> dict[str, Any]:
    """The streaming replay, its progress written after each page."""
    tally = Tally()
    span = (end - start).total_seconds()
    for page in replay.pages():
        tally.add(page)
        done = max(0.0, (page.last_occurred_at - start).total_seconds()) / span
        Simulation.objects.filter(pk=simulation.pk, status=Status.RUNNING).update(
            progress=min(done, 1.0),
            events_considered=tally.events_considered,
            updated_at=timezone.now(),
        )
    return {
        "events_considered": tally.events_considered,
        "would_run": tally.would_run,
        "leaves": replay.funnel(),
        "capped": tally.capped,
        "samples": tally.samples,
    }


def _fail(simulation: Simulation, exc: Exception) -> None:
    now = timezone.now()
    Simulation.objects.filter(pk=simulation.pk, status=Status.RUNNING).update(
        status=Status.FAILED,
        error=f"{exc.__class__.__name__}: {exc}"[:1000],
        updated_at=now,
        finished_at=now,
    )


def simulations_resume_stale(now: datetime) -> int:
    """Periodic: hand on again running simulations and backfills no worker touched
    lately; returns how many."""
    handed = 0
    for model, task in ((Simulation, SIMULATE_TASK), (WorkflowBackfill, BACKFILL_TASK)):
        stale = list(
            model.objects.filter(
                status=Status.RUNNING, updated_at__lt=now - STALE_AFTER
            ).values_list("pk", flat=True)[:20]
        )
        if stale:
            model.objects.filter(pk__in=stale).update(updated_at=now)
            background.enqueue_many(task, [(pk,) for pk in stale])
            handed += len(stale)
    return handed


# ---------------------------------------------------------------- backfills


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
    _check_period(start, now)
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
    target = _saved_target(workflow)
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
