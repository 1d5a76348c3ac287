"""Background work: how code hands work on, and the periodic jobs.

Two things every subsystem needs and none should own:
- `enqueue` / `enqueue_many`: hand a call of a registered Celery task to the
  background, by the task's name (so a service never imports the task module that
  imports the service's worker). Where it runs depends on the deployment
  (docs/operations.md): with a broker, a Celery worker (acks_late, reject on worker
  loss); without one, inside the served app, the embedded runner's threads; without
  one anywhere else (manage.py commands, tests), inline, right away. Never a
  countdown/ETA: waits live in the database as due times.
- The periodic-job registry: each app registers its jobs in AppConfig.ready()
  (`periodic_job_register`). Celery beat runs them as the `automation.run_periodic` task
  (the registry keeps `app.conf.beat_schedule` in step); the embedded default runs the
  same jobs on a short tick in a background thread of the served app, started by
  project/wsgi.py (never in manage.py commands or tests).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import shared_task

from project.celery import app

logger = logging.getLogger(__name__)

# The beat task's name (kept from when it lived in automation: beat messages in
# flight during an upgrade still find it).
RUN_PERIODIC = "automation.run_periodic"


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    func: Callable[[datetime], int]  # called as func(now); returns how many items it handed on


_JOBS: dict[str, PeriodicJob] = {}


def periodic_job_register(
    *, name: str, interval_seconds: float, func: Callable[[datetime], int]
) -> None:
    """Register (or replace) a periodic job; call it from AppConfig.ready()."""
    _JOBS[name] = PeriodicJob(name, interval_seconds, func)
    app.conf.beat_schedule = beat_schedule()


def periodic_jobs() -> list[PeriodicJob]:
    return list(_JOBS.values())


def job_by_name(name: str) -> PeriodicJob:
    return _JOBS[name]


def run_job(name: str, now: datetime | None = None) -> int:
    """Run one registered job now (what the beat task and the ticker both call)."""
    from django.utils import timezone

    return job_by_name(name).func(now or timezone.now())


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Celery beat entries: each job as the RUN_PERIODIC task.

    `expires` drops ticks that waited in the queue too long (behind a backlog of
    deliveries, say): the next tick does the same work, so piling them up would
    only add load; 10 intervals keeps one tick alive across a short backlog.
    """
    return {
        job.name: {
            "task": RUN_PERIODIC,
            "schedule": job.interval_seconds,
            "args": (job.name,),
            "options": {"expires": max(job.interval_seconds * 10, 10.0)},
        }
        for job in _JOBS.values()
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
        # In a copy of the submitter's context: the task's log lines name its request.
        self.pool.submit(contextvars.copy_context().run, _run_logged, func, args)

    def _loop(self) -> None:
        import time

        while not self._stop.wait(self.tick_seconds):
            now = time.monotonic()
            for job in list(_JOBS.values()):
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
                ", ".join(_JOBS),
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


# ---------------------------------------------------------------- handing work on


@shared_task(name=RUN_PERIODIC, acks_late=True)
def run_periodic_task(name: str) -> int:
    """Run one registered periodic job (scheduled by Celery beat)."""
    return run_job(name)


def enqueue_many(task_name: str, args_list: Iterable[tuple[Any, ...]]) -> None:
    """Hand each call of the task named `task_name` to the background (see the module
    docstring for where it runs). The task must be registered in this process: apps
    import their task modules in AppConfig.ready(). Raises at once (kombu's
    OperationalError) when the broker cannot be reached."""
    task = app.tasks[task_name]
    if not app.conf.task_always_eager:
        # No publish retries: with the broker down a caller (an API request) must not
        # wait for it. The rows are the source of truth: a sweeper sends what a lost
        # message left behind; callers log the failure and go on.
        with app.producer_or_acquire() as producer:
            for args in args_list:
                task.apply_async(args, producer=producer, retry=False)
        return
    runner = embedded_runner()
    for args in args_list:
        if runner is not None:
            runner.submit(task.run, args)
        else:
            task.run(*args)


def enqueue(task_name: str, *args: Any) -> None:
    """Hand one call to the background."""
    enqueue_many(task_name, [args])
