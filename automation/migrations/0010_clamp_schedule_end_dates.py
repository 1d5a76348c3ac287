"""Bring end dates past the year 9999 (in UTC) back to the last instant of 9999.

Until the API converted every datetime to UTC before saving, an end date such as
`9999-12-31T23:59:59-01:00` was stored as a moment in the year 10000, which no
Python datetime can hold: every list, read or delete of that schedule failed, and so
did the scheduler's tick that loaded it. Such an end date meant "never", and so does
the last instant of 9999. One UPDATE of the rows concerned (none, usually); it
locks only them. Reversing leaves the dates as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import migrations

LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def clamp(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return  # only PostgreSQL stored such dates as timestamps past 9999
    Schedule = apps.get_model("automation", "Schedule")
    Schedule.objects.filter(end_date__gt=LAST_INSTANT).update(end_date=LAST_INSTANT)


class Migration(migrations.Migration):
    dependencies = [("automation", "0009_link_workflow_endpoints")]

    operations = [migrations.RunPython(clamp, migrations.RunPython.noop)]
