"""Scheduled callbacks (seed 003): a cron schedule and the runs it has fired."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from automation.schedules import cron
from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["Schedule", "ScheduleRun"]


class Schedule(models.Model):
    """A callback POSTed to `callback_url` with `context` as its body, on a cron interval."""

    class Status(models.TextChoices):
        # Seed 003's statuses: never fired yet / fired at least once / paused / past end_date.
        INACTIVE = "INACTIVE"
        ACTIVE = "ACTIVE"
        PAUSED = "PAUSED"
        FINISHED = "FINISHED"

    # Statuses the scheduler fires (the partial index below covers exactly these).
    RUNNABLE = (Status.INACTIVE, Status.ACTIVE)

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    owner = models.EmailField(max_length=254)
    end_date = models.DateTimeField()
    interval = models.CharField(max_length=200, help_text="Cron expression (cron-parser syntax).")
    timezone = models.CharField(
        max_length=64, blank=True, default="", help_text="IANA zone; empty = UTC."
    )
    callback_url = models.URLField(max_length=2048)
    context = models.JSONField(default=dict, blank=True)
    # GET /schedules?tags=a,b is `tags @> '["a","b"]'`, served on PostgreSQL by the GIN index
    # schedule_tags_gin (jsonb_path_ops) that migration 0002 creates there only (SQLite has no GIN).
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.INACTIVE)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    # When a callback first went out (seed 003's "called at least once"), set by the
    # sender whatever the status: resume reads it to choose ACTIVE or INACTIVE.
    first_called_at = models.DateTimeField(null=True, blank=True)
    created_date = models.DateTimeField(default=now)
    updated_at = models.DateTimeField(auto_now=True)
    # The outbound endpoint its callbacks go through: URL guard, signing secret, delivery log.
    endpoint = models.OneToOneField(
        "automation.Endpoint",
        on_delete=models.PROTECT,
        related_name="schedule",
        null=True,
        blank=True,
    )

    class Meta:
        ordering = ["-created_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["INACTIVE", "ACTIVE", "PAUSED", "FINISHED"]),
                name="schedule_status_valid",
            ),
        ]
        indexes = [
            # The scheduler's due scan: WHERE status IN (INACTIVE, ACTIVE) AND next_run_at <= now
            # ORDER BY next_run_at. Idle (paused/finished) schedules are not in it at all.
            models.Index(
                fields=["next_run_at"],
                condition=Q(status__in=["INACTIVE", "ACTIVE"]),
                name="schedule_due_idx",
            ),
            # GET /schedules?owner=… sorted by created_date.
            models.Index(fields=["owner", "created_date", "id"], name="schedule_owner_idx"),
            # GET /schedules sorted by created_date (the default), no filter.
            models.Index(fields=["created_date", "id"], name="schedule_created_idx"),
            # The admin's status filter (paused, finished, …) in its created_date order.
            models.Index(fields=["status", "created_date", "id"], name="schedule_status_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def cron(self) -> cron.Cron:
        return cron.parse(self.interval)

    @property
    def zone(self) -> Any:
        return cron.zone(self.timezone) if self.timezone else None

    @property
    def interval_description(self) -> str:
        return self.cron.describe()

    def next_run_after(self, after: datetime) -> datetime | None:
        """The first run strictly after `after`, or None when it would fall after end_date."""
        run = self.cron.next_after(after, self.zone)
        return run if run <= self.end_date else None


class ScheduleRun(models.Model):
    """One tick of a schedule. Unique on (schedule, scheduled_for): a tick fires once."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    scheduled_for = models.DateTimeField()
    started_at = models.DateTimeField(default=now)
    delivery = models.OneToOneField(
        "automation.Delivery",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="schedule_run",
    )

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [
            # Several scheduler processes may claim the same tick; the second insert is a no-op.
            # Also the index for GET /schedules/{id}/runs (newest first).
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="schedulerun_once_per_tick"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.scheduled_for.isoformat()}"
