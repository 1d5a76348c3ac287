"""The Celery tasks of simulations and backfills: one row per call."""

from __future__ import annotations

from celery import shared_task

from automation.workflows.simulation.backfill import BACKFILL_TASK, backfill_run
from automation.workflows.simulation.services import SIMULATE_TASK, simulation_run

# Behind claims and actions on a shared queue: a simulation is nobody's lag.
SIMULATION_PRIORITY = 8


@shared_task(
    name=SIMULATE_TASK, acks_late=True, reject_on_worker_lost=True, priority=SIMULATION_PRIORITY
)
def simulate_workflow_task(simulation_id: str) -> bool:
    """Replay one simulation to its result."""
    return simulation_run(simulation_id=simulation_id)


@shared_task(
    name=BACKFILL_TASK, acks_late=True, reject_on_worker_lost=True, priority=SIMULATION_PRIORITY
)
def backfill_workflow_task(backfill_id: str) -> bool:
    """Run one backfill to its end (resumable from its cursor)."""
    return backfill_run(backfill_id=backfill_id)
