"""Three scheduler OS processes against one database fire each tick exactly once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Delivery
from tests.automation.schedules.conftest import NOW
from tests.automation.schedules.scheduler_process import run_ticks

PROCESSES = 3
SCHEDULES = 40
TICKS = [NOW + timedelta(seconds=s) for s in range(1, 11)]


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_three_scheduler_processes_fire_every_tick_exactly_once(
    make_schedule: Callable[..., Schedule], settings: Any
) -> None:
    settings.HERALD_SCHEDULE_MIN_INTERVAL_SECONDS = 1
    schedules = [make_schedule(interval="* * * * * *") for _ in range(SCHEDULES)]

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=run_ticks, args=(_database_url(), TICKS, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    fired_by_process = dict(results.get(timeout=180) for _ in processes)
    for process in processes:
        process.join(timeout=60)

    assert [p.exitcode for p in processes] == [0] * PROCESSES
    runs = list(ScheduleRun.objects.values_list("schedule_id", "scheduled_for", "delivery_id"))
    # Every schedule fired at every tick, once.
    per_tick = Counter((schedule_id, at) for schedule_id, at, _ in runs)
    assert set(per_tick) == {(s.id, t) for s in schedules for t in TICKS}
    assert set(per_tick.values()) == {1}
    # One delivery per run, none orphaned, and the processes' counts add up to exactly that.
    assert Delivery.objects.count() == SCHEDULES * len(TICKS)
    assert len({delivery_id for _, _, delivery_id in runs}) == SCHEDULES * len(TICKS)
    assert sum(fired_by_process.values()) == SCHEDULES * len(TICKS)
    # Fired, never called (nothing was sent): still INACTIVE, seed 003.
    assert set(Schedule.objects.values_list("status", flat=True)) == {"INACTIVE"}
