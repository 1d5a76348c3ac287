"""Reads of simulations and backfills."""

from __future__ import annotations

from automation.workflows.simulation.models import Simulation, WorkflowBackfill
from project.errors import NotFoundError


def simulation_get(*, simulation_id: str) -> Simulation:
    simulation = Simulation.objects.filter(pk=simulation_id).first()
    if simulation is None:
        raise NotFoundError(f"Simulation '{simulation_id}' not found.")
    return simulation


def backfill_get(*, backfill_id: str, workflow_id: str) -> WorkflowBackfill:
    backfill = WorkflowBackfill.objects.filter(pk=backfill_id, workflow_id=workflow_id).first()
    if backfill is None:
        raise NotFoundError(f"Backfill '{backfill_id}' not found.")
    return backfill
