"""Request bodies (msgspec) and output shapes of simulations and backfills."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from rest_framework import serializers

from automation.workflows.api.serializers import WorkflowIn
from automation.workflows.simulation.models import Simulation, WorkflowBackfill

# An instant with its offset: a period without one would mean different things to
# the client and the server.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]


class SimulateIn(msgspec.Struct, forbid_unknown_fields=True, rename={"from_": "from"}):
    """Body of POST /workflows/simulate: a workflow (saved by id, or a body) and a period."""

    from_: Instant
    to: Instant
    workflow_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    workflow: WorkflowIn | None = None


class BackfillIn(msgspec.Struct, forbid_unknown_fields=True, rename={"from_": "from"}):
    """Body of POST /workflows/{id}/backfill: from when; dry_run answers a simulation."""

    from_: Instant
    dry_run: bool = False


class SimulationSerializer(serializers.ModelSerializer):
    simulation_id = serializers.CharField(source="id")
    workflow_id = serializers.CharField(allow_null=True, help_text="Null: an unsaved workflow.")
    params = serializers.JSONField(help_text="What was replayed: from, to, workflow(_id).")
    result = serializers.JSONField(
        allow_null=True,
        help_text="Once done: events_considered, would_run, leaves, filtered_out_most, "
        "capped, caps_simulated, samples, notes (docs/automation.md).",
    )

    class Meta:
        model = Simulation
        fields = [
            "simulation_id",
            "workflow_id",
            "status",
            "progress",
            "events_considered",
            "params",
            "result",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class BackfillSerializer(serializers.ModelSerializer):
    backfill_id = serializers.CharField(source="id")
    workflow_id = serializers.CharField()
    # `from` is a Python keyword: declared below.

    class Meta:
        model = WorkflowBackfill
        fields = [
            "backfill_id",
            "workflow_id",
            "start",
            "watermark",
            "status",
            "progress",
            "events_considered",
            "runs_created",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields
