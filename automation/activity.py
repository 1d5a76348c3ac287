"""Workflow runs and webhook deliveries by the hour: the dashboard's automation trends.

The same mechanism as the hourly event counters (events_app.activity): statement-level
PostgreSQL triggers (automation migration 0014) add each INSERT's and DELETE's rows per
hour of `created_at` into ActivityHourCount, so runs started and deliveries created
stay exact for every writer (the ingest statement, the runner, cascaded deletes)
without a COUNT over the window. Outcomes change after the insert (a run fails, a
delivery succeeds), so they are not counted here: the few rows that did not succeed
(failed, pending, cancelled) are read through the (status, id) indexes, and "succeeded"
is what is left. No trigger fires on UPDATE, so workers pay nothing.

On SQLite there are no triggers: the dashboard groups the rows themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import Sum
from django.db.models.functions import Trunc

from project.postgresql.slots import slot_counters_fold

RUNS = "run"
DELIVERIES = "delivery"


class ActivityHourCount(models.Model):
    """How many workflow runs (`kind` "run") or webhook deliveries ("delivery") were
    created in one hour (UTC). Written only by the triggers; a kind's figure for an
    hour is the sum of its slots (concurrent writers add into different slots)."""

    kind = models.CharField(max_length=16)
    hour = models.DateTimeField()
    slot = models.PositiveSmallIntegerField()
    created = models.BigIntegerField(default=0)

    class Meta:
        app_label = "automation"
        constraints = [
            # The triggers' ON CONFLICT target; also serves the dashboard's hour range.
            models.UniqueConstraint(
                fields=["kind", "hour", "slot"], name="activityhourcount_kind_hour_slot"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.hour:%Y-%m-%dT%H}[{self.slot}]={self.created}"


def created_per_bucket(
    *, kind: str, model: type[models.Model], since: datetime, until: datetime, bucket: str
) -> dict[datetime, int]:
    """{bucket start: rows of `model` created} in [since, until): from the hourly counts
    on PostgreSQL, from the rows (by their time-ordered ids) on SQLite."""
    if connection.vendor == "postgresql":
        counted: Any = (
            ActivityHourCount.objects.filter(kind=kind, hour__gte=since, hour__lt=until)
            .annotate(bucket=Trunc("hour", bucket, tzinfo=UTC))
            .values_list("bucket")
            .annotate(n=Sum("created"))
            .order_by()
        )
    else:
        from project.ids import public_id_floor

        counted = (
            model._default_manager.filter(pk__gte=public_id_floor(since))
            .annotate(bucket=Trunc("created_at", bucket, tzinfo=UTC))
            .values_list("bucket")
            .annotate(n=models.Count("pk"))
            .order_by()
        )
    return {b: int(n) for b, n in counted if n}


def activity_hour_counts_fold(now: datetime) -> int:
    """The periodic job: fold the slots of hours before the last one into slot 0 and
    drop hours that count nothing (as events_app.activity.hour_counts_fold does)."""
    if connection.vendor != "postgresql":
        return 0
    before = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return slot_counters_fold(
        table=ActivityHourCount._meta.db_table,
        keys=("kind", "hour"),
        value="created",
        before=before,
    )
