"""The rows of simulations and backfills: the only thing either writes besides runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from automation.workflows.models import Workflow
from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["Simulation", "WorkflowBackfill"]


class Status(models.TextChoices):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Simulation(models.Model):
    """A workflow (saved or not) replayed over a period of stored events, firing nothing.

    `params` holds what to replay (the workflow body or id, from, to), so a worker
    that takes the row over after a crash replays the same thing; `result` the
    answer once done. `updated_at` is the heartbeat the sweeper looks at.
    """

    Status = Status

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    # Null for an unsaved workflow body; a deleted workflow takes its simulations along.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    progress = models.FloatField(default=0.0)  # 0..1, the share of the period replayed
    events_considered = models.PositiveBigIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweeper: running simulations whose worker went quiet.
            models.Index(
                fields=["updated_at"],
                condition=Q(status="running"),
                name="simulation_running_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"simulation {self.pk}: {self.status}"


class WorkflowBackfill(models.Model):
    """A saved workflow run over its past events: real runs, `source` backfill.

    The watermark splits the events between the backfill and live evaluation: the
    backfill takes events ingested (`created_at`) before `watermark` whose occurred_at
    is at or after `start`; live evaluation only ever sees events claimed while the
    workflow is active, which are ingested after it. An event on the edge (ingested
    just before the watermark, claimed after) is run once all the same: the unique
    (event, workflow) constraint of runs admits one of the two inserts.

    `cursor_*` is the last event whose run was inserted (resumption skips the inserts
    before it; the replay itself restarts from `start`, as its re-entry decisions
    depend on everything before).
    """

    Status = Status

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="backfills")
    start = models.DateTimeField()
    watermark = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    progress = models.FloatField(default=0.0)
    events_considered = models.PositiveBigIntegerField(default=0)
    runs_created = models.PositiveBigIntegerField(default=0)
    cursor_occurred_at = models.DateTimeField(null=True, blank=True)
    cursor_event_id = models.CharField(max_length=PUBLIC_ID_LENGTH, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One backfill of a workflow at a time (a second would race the first's cursor).
            models.UniqueConstraint(
                fields=["workflow"],
                condition=Q(status="running"),
                name="workflowbackfill_one_running",
            ),
        ]
        indexes = [
            # The sweeper: running backfills whose worker went quiet.
            models.Index(
                fields=["updated_at"],
                condition=Q(status="running"),
                name="workflowbackfill_running_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"backfill {self.pk} of {self.workflow_id}: {self.status}"
