"""Entry point of a scheduler OS process for test_scheduler_processes (spawned, not forked)."""

from __future__ import annotations

import os
from datetime import datetime
from multiprocessing.synchronize import Barrier
from typing import Any


def run_ticks(database_url: str, ticks: list[datetime], barrier: Barrier, results: Any) -> None:
    """Set up Django on the test database, then run the scheduler once per tick in lockstep."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    # Small chunks so the processes interleave; deliveries are left to the delivery
    # dispatcher (not sent from here: nothing in this test may call out).
    os.environ["HERALD_SCHEDULE_CLAIM_CHUNK"] = "7"
    os.environ["HERALD_SCHEDULE_ENQUEUE_MAX"] = "0"
    import django

    django.setup()
    from automation.schedules.scheduler import dispatch_due_schedules

    fired = 0
    for tick in ticks:
        barrier.wait(timeout=120)
        fired += dispatch_due_schedules(tick)
    results.put((os.getpid(), fired))
