"""Simulations and backfills API: thin views over automation.workflows.simulation.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.workflows import selectors as workflow_selectors
from automation.workflows.simulation import backfill as backfills
from automation.workflows.simulation import selectors, services
from automation.workflows.simulation.api.serializers import (
    BackfillIn,
    BackfillSerializer,
    SimulateIn,
    SimulationSerializer,
)
from automation.workflows.simulation.models import Simulation
from project.api.body import parse_body
from project.api.schema import envelope, errors, msgspec_body
from project.api.strict import StrictAPIView


def _workflow_body(body: SimulateIn) -> dict[str, Any] | None:
    if body.workflow is None:
        return None
    w = body.workflow
    return {
        "name": w.name,
        "trigger_event_types": w.trigger_event_types,
        "trigger_segments": (
            None
            if w.trigger_segments is None
            else [{"segment": t.segment, "on": t.on} for t in w.trigger_segments]
        ),
        "conditions": w.conditions,
        "actions": w.actions,
        "active": w.active,
        "reentry": w.reentry,
        # A policy's key or id (JSON keeps no "unset": absent means none).
        "delivery_policy": w.delivery_policy if isinstance(w.delivery_policy, str) else None,
    }


def _answer(simulation: Simulation) -> Response:
    """200 with the result when it is there, else 202 (poll GET /workflows/simulations/{id})."""
    code = status.HTTP_202_ACCEPTED if simulation.status == "running" else status.HTTP_200_OK
    return Response({"data": SimulationSerializer(simulation).data}, status=code)


SIMULATION = SimulationSerializer()


class SimulateView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_simulate",
        request=msgspec_body(SimulateIn),
        responses={
            200: envelope("SimulationDone", SIMULATION),
            202: envelope("SimulationStarted", SIMULATION),
            **errors(400, 404, 415),
        },
    )
    def post(self, request: Request) -> Response:
        body = parse_body(request, SimulateIn)
        simulation = services.simulation_create(
            start=body.from_,
            end=body.to,
            workflow_id=body.workflow_id,
            workflow=_workflow_body(body),
        )
        return _answer(simulation)


class SimulationDetailView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_simulations_retrieve",
        responses={200: envelope("SimulationDetail", SIMULATION), **errors(404)},
    )
    def get(self, request: Request, simulation_id: str) -> Response:
        simulation = selectors.simulation_get(simulation_id=simulation_id)
        return Response({"data": SimulationSerializer(simulation).data})


class BackfillView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_backfill",
        request=msgspec_body(BackfillIn),
        responses={
            200: envelope("BackfillDryRunDone", SIMULATION),
            202: envelope("BackfillStarted", BackfillSerializer()),
            **errors(400, 404, 409, 415),
        },
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_selectors.workflow_get(workflow_id=workflow_id)
        body = parse_body(request, BackfillIn)
        if body.dry_run:
            from django.utils import timezone

            simulation = services.simulation_create(
                start=body.from_, end=timezone.now(), workflow_id=workflow.pk
            )
            return _answer(simulation)
        backfill = backfills.backfill_create(workflow=workflow, start=body.from_)
        return Response(
            {"data": BackfillSerializer(backfill).data}, status=status.HTTP_202_ACCEPTED
        )


class BackfillDetailView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_backfills_retrieve",
        responses={200: envelope("BackfillDetail", BackfillSerializer()), **errors(404)},
    )
    def get(self, request: Request, workflow_id: str, backfill_id: str) -> Response:
        backfill = selectors.backfill_get(backfill_id=backfill_id, workflow_id=workflow_id)
        return Response({"data": BackfillSerializer(backfill).data})
