"""Backfill Schedule.first_called_at for schedules that existed before the field.

ACTIVE ones have been called (until this release ACTIVE was set when a run was handed
off: the closest record there is); PAUSED and FINISHED ones were called if an attempt
of their callback went out, i.e. one the outbound guard did not refuse. Reversing
leaves the column to the schema migration's removal.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import Min, Q

# The sender's prefix for attempts the guard refused (automation.delivery_sender), frozen
# here as of this migration.
GUARD_REFUSED = "Refused by the outbound guard: "


def backfill(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("automation", "Schedule")
    DeliveryAttempt = apps.get_model("automation", "DeliveryAttempt")
    for schedule in Schedule.objects.filter(first_called_at__isnull=True).exclude(
        status="INACTIVE"
    ):
        first = (
            DeliveryAttempt.objects.filter(delivery__endpoint_id=schedule.endpoint_id)
            .filter(~Q(error__startswith=GUARD_REFUSED))
            .aggregate(first=Min("started_at"))["first"]
        )
        if first is None and schedule.status == "ACTIVE":
            first = schedule.last_run_at or schedule.updated_at
        if first is not None:
            Schedule.objects.filter(pk=schedule.pk).update(first_called_at=first)


class Migration(migrations.Migration):
    dependencies = [("automation", "0005_schedule_first_called_at")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
