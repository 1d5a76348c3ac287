"""A real Celery worker subprocess on a real Redis broker, for end-to-end tests of any area.

    with celery_broker() as broker:
        with celery_worker(broker) as worker:
            ... create rows in a transactional_db test; the worker sees committed rows ...
            worker.kill()  # SIGKILL, a crashed machine: nothing is acked or cleaned up
        with celery_worker(broker):  # a second worker on the same queue
            ...

Isolation between pytest-xdist workers (they run such tests at the same time):
- the queue is `herald-test-<xdist worker>`, and the worker subprocess gets it as
  CELERY_TASK_DEFAULT_QUEUE, so what it enqueues itself (a workflow run's actions,
  follow-on sends) stays on that queue too;
- the Redis database is CELERY_TEST_BROKER_URL if set (scripts/test sets one; the
  queue names keep processes apart), otherwise redis://127.0.0.1:6379/<db> with db
  taken from HERALD_TEST_REDIS_DBS by the xdist worker number (default "1,2":
  gw0 -> 1, gw1 -> 2, gw2 -> 1, ..., no xdist -> the first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kombu.pools
import redis
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def broker_url_for_this_process() -> str:
    explicit = os.environ.get("CELERY_TEST_BROKER_URL")
    if explicit:
        return explicit
    dbs = [int(d) for d in os.environ.get("HERALD_TEST_REDIS_DBS", "1,2").split(",")]
    worker = xdist_worker()
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return f"redis://127.0.0.1:6379/{dbs[index % len(dbs)]}"


@dataclass
class Broker:
    url: str
    queue: str
    # True when no other test process uses this Redis database (see the module docstring).
    own_database: bool


def broker_for_this_process() -> Broker:
    return Broker(
        url=broker_url_for_this_process(),
        queue=f"herald-test-{xdist_worker() or 'main'}",
        own_database=not os.environ.get("CELERY_TEST_BROKER_URL"),
    )


@contextmanager
def celery_broker() -> Iterator[Broker]:
    """Point this process's Celery app at the test Redis (not eager) for the duration.

    `transaction.on_commit` enqueues then go to Redis exactly as in production.
    """
    from project.celery import app

    broker = broker_for_this_process()
    saved = {
        key: app.conf.get(key) for key in ("broker_url", "task_always_eager", "task_default_queue")
    }
    app.conf.update(broker_url=broker.url, task_always_eager=False, task_default_queue=broker.queue)
    _reset_pool(app)
    client = redis.Redis.from_url(broker.url)
    client.delete(broker.queue)  # nothing left over from a crashed run
    try:
        yield broker
    finally:
        _reset_pool(app)
        app.conf.update(saved)
        client.delete(broker.queue)
        if broker.own_database:
            # A killed worker's reserved messages wait here for the visibility timeout
            # (an hour); they would be restored into a later run's queue.
            client.delete("unacked", "unacked_index", "unacked_mutex")
        client.close()


def _reset_pool(app: Any) -> None:
    """Drop cached broker connections so the next publish uses the current broker_url."""
    pool = app._pool
    if pool is not None:
        pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()  # kombu caches producer pools per connection, process-wide


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path
    final_log: str | None = None  # kept once the worker stopped and its file is gone

    def log(self) -> str:
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool): nothing gets to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def celery_worker(
    broker: Broker,
    *,
    env: dict[str, str] | None = None,
    pool: str = "threads",
    concurrency: int = 4,
) -> Iterator[Worker]:
    """Start `celery -A project worker` on the test database; stop it afterwards.

    `pool="solo"` runs tasks one at a time in the main process (a kill then stops
    the work exactly where it is).
    """
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    worker_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker.url,
        "CELERY_TASK_DEFAULT_QUEUE": broker.queue,
        "HERALD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DB_CONN_MAX_AGE": "0",
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
        prefix="celery-worker-", suffix=".log", delete=False
    )
    command = [
        sys.executable, "-m", "celery", "-A", "project", "worker",
        "--pool", pool, "--concurrency", str(1 if pool == "solo" else concurrency),
        "-Q", broker.queue, "-n", f"{broker.queue}-{time.monotonic_ns()}@%h",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own fixed command line
        command, cwd=BASE_DIR, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    worker = Worker(process, Path(log.name))
    try:
        deadline = time.monotonic() + 60
        while "ready." not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Celery worker did not start:\n{worker.log()}")
            time.sleep(0.1)
        yield worker
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        worker.final_log = worker.log()
        log.close()
        os.unlink(log.name)


def wait_until(predicate: Callable[[], T], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll what a worker subprocess writes (bounded); return the first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
