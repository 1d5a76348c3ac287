"""Periodic jobs: one registry for Celery beat and for the embedded ticker.

Each job is a dotted path to a callable taking `now` and returning how many
items it handed on. Production runs them from Celery beat (project/celery.py
builds beat_schedule from PERIODIC_JOBS); the embedded default (no broker) runs
the same jobs on a short tick in a background thread of the served app, started
by project/wsgi.py — never in manage.py commands or tests.

Adding a job is one line in PERIODIC_JOBS.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    path: str  # "module.function", called as function(now) -> int

    def resolve(self) -> Callable[[datetime], int]:
        module, _, attr = self.path.rpartition(".")
        func: Callable[[datetime], int] = getattr(importlib.import_module(module), attr)
        return func


PERIODIC_JOBS: list[PeriodicJob] = [
    # Due retries, lost broker messages and attempts of killed workers.
    PeriodicJob("deliveries.dispatch", 1.0, "automation.delivery_sender.dispatch_due_deliveries"),
    # Due scheduled callbacks, once per tick across all processes (automation.scheduler).
    PeriodicJob("schedules.dispatch", 1.0, "automation.scheduler.dispatch_due_schedules"),
    # Lost workflow evaluations, due waits and runs of killed workers (automation.workflow_runs).
    PeriodicJob("workflows.tick", 1.0, "automation.workflow_runs.automation_tick"),
]


def job_by_name(name: str) -> PeriodicJob:
    for job in PERIODIC_JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


def run_job(name: str, now: datetime | None = None) -> int:
    """Run one registered job now (what the beat task and the ticker both call)."""
    from django.utils import timezone

    return job_by_name(name).resolve()(now or timezone.now())


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Celery beat entries: each job as the automation.run_periodic task.

    `expires` drops ticks that waited in the queue too long (behind a backlog of
    deliveries, say): the next tick does the same work, so piling them up would
    only add load; 10 intervals keeps one tick alive across a short backlog.
    """
    return {
        job.name: {
            "task": "automation.run_periodic",
            "schedule": job.interval_seconds,
            "args": (job.name,),
            "options": {"expires": max(job.interval_seconds * 10, 10.0)},
        }
        for job in PERIODIC_JOBS
    }


# ---------------------------------------------------------------- the embedded runner


class EmbeddedRunner:
    """Background work without a broker: a ticker thread and a small thread pool.

    Tasks submitted here run off the request thread (a slow webhook never holds
    an API response); periodic jobs run every tick on the ticker thread.
    """

    def __init__(self, *, tick_seconds: float, threads: int) -> None:
        self.tick_seconds = tick_seconds
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="herald-task")
        self._stop = threading.Event()
        self._last_run: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="herald-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking, drop queued tasks, wait for running ones (bounded by their deadlines)."""
        self._stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._thread.join(timeout=30)

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.pool.submit(_run_logged, func, args)

    def _loop(self) -> None:
        import time

        while not self._stop.wait(self.tick_seconds):
            now = time.monotonic()
            for job in PERIODIC_JOBS:
                if now - self._last_run.get(job.name, 0.0) >= job.interval_seconds:
                    self._last_run[job.name] = now
                    _run_logged(run_job, (job.name,))


def _run_logged(func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    from django.db import connections

    try:
        func(*args)
    except Exception:
        logger.exception("Background job %s%r failed", getattr(func, "__name__", func), args)
    finally:
        # Close this thread's connections: an idle pool thread must not hold one open
        # (the embedded default is SQLite, where connecting costs next to nothing).
        connections.close_all()


_runner: EmbeddedRunner | None = None
_runner_lock = threading.Lock()


def embedded_runner() -> EmbeddedRunner | None:
    return _runner


def start_embedded_runner() -> EmbeddedRunner:
    """Start the in-process ticker and task threads once per process (idempotent)."""
    global _runner
    from django.conf import settings

    with _runner_lock:
        if _runner is None:
            _runner = EmbeddedRunner(
                tick_seconds=settings.HERALD_EMBEDDED_TICK_SECONDS,
                threads=settings.HERALD_EMBEDDED_WORKER_THREADS,
            )
            _runner.start()
            logger.warning(
                "Embedded background work: no CELERY_BROKER_URL, so tasks and periodic jobs "
                "(%s) run in this process every %g s.",
                ", ".join(j.name for j in PERIODIC_JOBS),
                settings.HERALD_EMBEDDED_TICK_SECONDS,
            )
            allowed = settings.HERALD_OUTBOUND_ALLOWED_NETWORKS
            if allowed:
                logger.warning(
                    "Outbound guard lifted for %s (HERALD_OUTBOUND_ALLOWED_NETWORKS): webhooks "
                    "may call these addresses. Do not use this in production.",
                    ", ".join(allowed),
                )
    return _runner
