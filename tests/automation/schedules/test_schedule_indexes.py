"""Due scan and tags filter use their indexes; the scheduler is a registered periodic job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db import connection, transaction

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.scheduler import due_schedules
from automation.schedules.selectors import schedule_list
from project import background
from tests.automation.schedules.conftest import NOW


def _plan(queryset: object) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        # A handful of test rows would be read sequentially; ask whether the index can serve.
        cursor.execute("SET LOCAL enable_seqscan = off")
        return str(queryset.explain())  # type: ignore[attr-defined]


def test_due_scan_uses_the_partial_due_index(make_schedule: Callable[..., Schedule]) -> None:
    make_schedule()
    assert "schedule_due_idx" in _plan(due_schedules(NOW + timedelta(minutes=5)))


def test_tags_filter_uses_the_gin_index(make_schedule: Callable[..., Schedule]) -> None:
    make_schedule()
    assert "schedule_tags_gin" in _plan(schedule_list(tags=["prod", "eu"]))


def test_scheduler_runs_from_the_periodic_registry_every_second(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule()
    job = background.job_by_name("schedules.dispatch")
    assert job.interval_seconds == 1.0
    assert "schedules.dispatch" in background.beat_schedule()

    assert background.run_job("schedules.dispatch", NOW + timedelta(minutes=1)) == 1

    assert ScheduleRun.objects.filter(schedule=schedule).count() == 1
