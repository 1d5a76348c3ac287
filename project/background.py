"""Background work: how code hands work on, and the periodic jobs.

Two things every subsystem needs and none should own:
- `enqueue` / `enqueue_many`: hand a call of a registered Celery task to the
  background, by the task's name (so a service never imports the task module that
  imports the service's worker). Where it runs depends on the deployment
  (docs/operations.md): with a broker, a Celery worker (acks_late, reject on worker
  loss); without one, inside the served app, the embedded runner's threads; without
  one anywhere else (manage.py commands, tests), inline, right away. Never a
  countdown/ETA: waits live in the database as due times.
- `wake` / `wake_on_commit`: ask for one run of a claimer task (a task that claims
  whatever is due in the database, set-based), coalesced: with a Redis broker, a key
  set with NX says a run is already asked for and not yet started, so most callers
  under load publish nothing; the claimer calls `wake_taken` before each claim. The
  rows are the source of truth: a lost wake-up only delays the work until the
  periodic job that runs the same claimer. `wake_helper` / `wake_release`: a claimer
  that finds a backlog asks for more runs of itself, each holding one of a bounded
  number of helper slots (one key each), so several workers drain it at once.
- A circuit breaker: after a publish failed, nothing is published for
  HERALD_BROKER_RETRY_SECONDS (logged once), so an API request never waits for a
  broker that is down; the periodic jobs send what the missed messages would have.
- The periodic-job registry: each app registers its jobs in AppConfig.ready()
  (`periodic_job_register`). Celery beat runs them as the `automation.run_periodic` task
  (the registry keeps `app.conf.beat_schedule` in step); the embedded default runs the
  same jobs on a short tick in a background thread of the served app, started by
  project/wsgi.py (never in manage.py commands or tests).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
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


class BrokerUnavailable(Exception):
    """The broker failed a moment ago: nothing is published until the breaker closes."""


class BrokerBreaker:
    """After a failed publish, skip publishing for `retry_seconds` (logged once), then
    try again: an API request must not pay a connection attempt per call while the
    broker is down."""

    def __init__(self) -> None:
        self._open_until = 0.0

    def check(self) -> None:
        if time.monotonic() < self._open_until:
            raise BrokerUnavailable("the broker failed recently; not publishing")

    def failed(self, exc: BaseException) -> None:
        from django.conf import settings

        retry = float(settings.HERALD_BROKER_RETRY_SECONDS)
        self._open_until = time.monotonic() + retry
        logger.warning(
            "Broker unreachable (%s): not publishing for %g s; the periodic jobs do the work.",
            exc,
            retry,
        )

    def reset(self) -> None:
        self._open_until = 0.0


BREAKER = BrokerBreaker()


def _published(publish: Callable[[], Any]) -> Any:
    """Run `publish` behind the breaker; a failure opens it and is raised."""
    BREAKER.check()
    try:
        return publish()
    except Exception as exc:
        BREAKER.failed(exc)
        raise


def enqueue_many(task_name: str, args_list: Iterable[tuple[Any, ...]]) -> None:
    """Hand each call of the task named `task_name` to the background (see the module
    docstring for where it runs). The task must be registered in this process: apps
    import their task modules in AppConfig.ready(). Raises at once when the broker
    cannot be reached (kombu's OperationalError), or failed a moment ago
    (`BrokerUnavailable`)."""
    task = app.tasks[task_name]
    if not app.conf.task_always_eager:
        # No publish retries: with the broker down a caller (an API request) must not
        # wait for it. The rows are the source of truth: a sweeper sends what a lost
        # message left behind; callers log the failure and go on.
        def publish() -> None:
            with app.producer_or_acquire() as producer:
                for args in args_list:
                    task.apply_async(args, producer=producer, retry=False)

        _published(publish)
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


# ---------------------------------------------------------------- waking a claimer

# Longest a wake-up key outlives a lost message: callers publish again after it (the
# periodic job running the same claimer clears it sooner).
WAKE_KEY_SECONDS = 10

_wake_lock = threading.Lock()
_wakes_pending: set[str] = set()  # without a broker: claimers asked for, not started
_redis_clients: dict[str, redis.Redis] = {}


def _wake_redis() -> tuple[redis.Redis, str] | None:
    """The broker's Redis and the wake-up keys' prefix, or None when the broker is not
    Redis (then every wake-up is published). The prefix carries kombu's key prefix and
    the default queue, so deployments (and test runs) on one Redis stay apart."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = _redis_clients.get(url)
    if client is None:
        from django.conf import settings

        timeout = float(settings.HERALD_BROKER_CONNECT_TIMEOUT)
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        _redis_clients[url] = client
    options = app.conf.broker_transport_options or {}
    prefix = f"{options.get('global_keyprefix', '')}herald:wake:{app.conf.task_default_queue}:"
    return client, prefix


def wake(task_name: str) -> None:
    """Ask for one run of the claimer task `task_name` (no arguments); coalesced.

    With a broker: SET NX of the task's wake-up key; only the caller that sets it
    publishes the task. A key already set means a run was asked for and has not yet
    called `wake_taken`, so it will claim after this caller's commit: nothing to do.
    Without a broker: the same in-process, on the embedded runner's threads (inline
    where there is none). Never raises: a failure is logged by the breaker and the
    periodic job claims the work instead.
    """
    task = app.tasks[task_name]
    if app.conf.task_always_eager:
        runner = embedded_runner()
        if runner is None:
            task.run()
            return
        with _wake_lock:
            if task_name in _wakes_pending:
                return
            _wakes_pending.add(task_name)
        runner.submit(task.run, ())
        return
    try:
        shared = _wake_redis()
        if shared is not None:
            client, prefix = shared
            key = prefix + task_name
            if not _published(lambda: client.set(key, 1, nx=True, ex=WAKE_KEY_SECONDS)):
                return
        _published(lambda: task.apply_async((), retry=False))
    except Exception:  # noqa: S110 - the breaker logged it; the periodic job covers it
        pass


def wake_on_commit(task_name: str) -> None:
    """`wake` after the caller's transaction commits (at once outside one)."""
    from django.db import transaction

    transaction.on_commit(lambda: wake(task_name))


def wake_taken(task_name: str) -> None:
    """Called by the claimer before each claim: a `wake` from now on asks for another
    run (its caller's rows may be committed after this claim's snapshot)."""
    if app.conf.task_always_eager:
        with _wake_lock:
            _wakes_pending.discard(task_name)
        return
    try:
        shared = _wake_redis()
        if shared is not None:
            client, prefix = shared
            _published(lambda: client.delete(prefix + task_name))
    except Exception:  # noqa: S110 - the key expires; the claim goes on regardless
        pass


def _slot_key(task_name: str, slot: int) -> tuple[redis.Redis, str] | None:
    shared = _wake_redis()
    if shared is None:
        return None
    client, prefix = shared
    return client, f"{prefix}{task_name}:helper:{slot}"


def wake_helper(task_name: str, *, limit: int, hold_seconds: float) -> int:
    """Ask for one more run of the claimer `task_name` beside those running, as
    `task_name(slot)`; return the slot asked for, or 0 when none was.

    Slots 1 .. limit-1 (slot 0 is the run `wake` asks for): SET NX of each slot's key
    until one is set, then one publish; a slot is held until its run calls
    `wake_release` or `hold_seconds` pass (a lost message or a killed worker frees
    it then). Only with a Redis broker: the embedded default drains with one claimer
    (SQLite takes one writer at a time), and without a shared key the runs could not
    be bounded. Never raises: a helper is an optimisation, the asking run goes on.
    """
    if app.conf.task_always_eager or limit < 2:
        return 0
    task = app.tasks[task_name]
    ttl = max(int(hold_seconds), 1)
    try:
        for slot in range(1, limit):
            shared = _slot_key(task_name, slot)
            if shared is None:
                return 0
            client, key = shared

            def take(client: redis.Redis = client, key: str = key) -> Any:
                return client.set(key, 1, nx=True, ex=ttl)

            if _published(take):
                _published(functools.partial(task.apply_async, (slot,), retry=False))
                return slot
    except Exception:  # noqa: S110 - the breaker logged it; the asking run drains alone
        pass
    return 0


def wake_release(task_name: str, slot: int) -> None:
    """Give a helper slot back (its run found the backlog drained, or ran its time)."""
    if app.conf.task_always_eager or slot < 1:
        return
    try:
        shared = _slot_key(task_name, slot)
        if shared is not None:
            client, key = shared
            _published(lambda: client.delete(key))
    except Exception:  # noqa: S110 - the key expires
        pass
