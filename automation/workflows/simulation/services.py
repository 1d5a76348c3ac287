"""Writes of simulations and backfills: create the row, run it (one item per call).

Simulation protocol:

1. `simulation_create` validates the request (a saved workflow by id, or a workflow
   body validated as POST /workflows validates it; a period of at most MAX_DAYS days),
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

Backfills: automation.workflows.simulation.backfill (the sweeper below serves both).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from automation.workflows.simulation import setbased
from automation.workflows.simulation.backfill import BACKFILL_TASK
from automation.workflows.simulation.models import Simulation, WorkflowBackfill
from automation.workflows.simulation.replay import Replay, ReplaySpec, Tally
from automation.workflows.simulation.targets import Target, check_period, target_of
from events_app.models import Event
from project import background
from project.errors import ValidationFailed

logger = logging.getLogger(__name__)

SIMULATE_TASK = "automation.simulate_workflow"
# A period with at most this many triggered events is replayed in the request.
SMALL_RANGE = 10_000
# A running row whose heartbeat is older than this is taken over by the sweeper.
STALE_AFTER = timedelta(minutes=5)
# Trees of frequency leaves only are replayed in one statement (simulation.setbased).
SET_BASED = True

Status = Simulation.Status


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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
    check_period(start, end)
    params: dict[str, Any] = {"from": _iso(start), "to": _iso(end)}
    if workflow_id is not None:
        params["workflow_id"] = workflow_id
    else:
        params["workflow"] = workflow
    target = target_of(params)
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
        target = target_of(simulation.params)
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
        policy_id=target.policy_id,
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
