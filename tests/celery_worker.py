"""A real Celery worker subprocess on a real Redis broker, for end-to-end tests of any area.

    with celery_broker() as broker:
        with celery_worker(broker) as worker:
            ... create rows in a transactional_db test; the worker sees committed rows ...
            worker.kill()  # SIGKILL, a crashed machine: nothing is acked or cleaned up
        with celery_worker(broker):  # a second worker on the same queue
            ...

Isolation (other pytest-xdist workers, other checkouts of this repository and other
people may use the same Redis at the same time):
- the broker is CELERY_TEST_BROKER_URL (default redis://127.0.0.1:6379/15), a Redis
  database that may be shared: nothing here flushes it;
- each process gets a namespace `herald-test-<checkout id>-<xdist worker>`, the
  checkout id being the first 8 hex digits of the SHA-1 of this checkout's absolute
  path (`checkout_id()`, the same id scripts/test puts in the test database's name);
- the namespace is the queue name, passed to the worker subprocess as
  CELERY_TASK_DEFAULT_QUEUE, so what it enqueues itself (a workflow run's actions,
  follow-on sends) stays on that queue too;
- the namespace plus ":" is kombu's `global_keyprefix` in this process and in the worker
  subprocess, so every key the run creates (queue, bindings, unacked messages) carries
  it: `celery_broker()` deletes its own namespace's keys before and after, and the
  session's end (`sweep_redis_keys()`, called from tests/conftest.py) deletes whatever
  this checkout left under `herald-test-<checkout id>-`.
"""

from __future__ import annotations

import hashlib
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


DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"


def checkout_id(path: Path = BASE_DIR) -> str:
    """A short name for a checkout, stable across runs and distinct between checkouts on
    one machine: the first 8 hex digits of the SHA-1 of its absolute path. scripts/test
    derives the same id (sha1sum of `pwd -P`) for the test database's name."""
    return hashlib.sha1(str(path).encode()).hexdigest()[:8]  # noqa: S324 - a name, not a secret


def checkout_namespace() -> str:
    """The prefix of every queue and Redis key this checkout's test runs create."""
    return f"herald-test-{checkout_id()}-"


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def broker_url() -> str:
    return os.environ.get("CELERY_TEST_BROKER_URL") or DEFAULT_BROKER_URL


@dataclass
class Broker:
    url: str
    queue: str
    # kombu's global_keyprefix: every Redis key this broker's users create starts with it.
    key_prefix: str

    def transport_options(self, base: dict[str, Any]) -> dict[str, Any]:
        return {**base, "global_keyprefix": self.key_prefix}


def broker_for_this_process() -> Broker:
    queue = f"{checkout_namespace()}{xdist_worker() or 'main'}"
    return Broker(url=broker_url(), queue=queue, key_prefix=f"{queue}:")


def delete_keys(client: redis.Redis, prefix: str) -> int:
    """Delete the keys starting with `prefix` (SCAN, never FLUSHDB: the database is shared)."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) == 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def sweep_redis_keys() -> int:
    """Delete every key this checkout's test runs left in the test broker's database
    (a crashed run, or a worker killed with messages reserved). Run once, at the end of
    the whole session. Returns the number of keys deleted; Redis down deletes nothing."""
    client = redis.Redis.from_url(broker_url(), socket_connect_timeout=2, socket_timeout=10)
    try:
        return delete_keys(client, checkout_namespace())
    except redis.ConnectionError:
        return 0
    finally:
        client.close()


@contextmanager
def celery_broker() -> Iterator[Broker]:
    """Point this process's Celery app at the test Redis (not eager) for the duration.

    `transaction.on_commit` enqueues then go to Redis exactly as in production.
    """
    from project.background import BREAKER
    from project.celery import app

    broker = broker_for_this_process()
    BREAKER.reset()  # a broker-down test before this one must not keep publishes off
    keys = ("broker_url", "broker_transport_options", "task_always_eager", "task_default_queue")
    saved = {key: app.conf.get(key) for key in keys}
    app.conf.update(
        broker_url=broker.url,
        broker_transport_options=broker.transport_options(saved["broker_transport_options"]),
        task_always_eager=False,
        task_default_queue=broker.queue,
    )
    _reset_pool(app)
    client = redis.Redis.from_url(broker.url)
    delete_keys(client, broker.key_prefix)  # nothing left over from a crashed run
    try:
        yield broker
    finally:
        _reset_pool(app)
        app.conf.update(saved)
        # Also a killed worker's reserved messages: they would wait for the visibility
        # timeout (an hour) and then be restored into a later run's queue.
        delete_keys(client, broker.key_prefix)
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


# `celery -A project worker`, with the broker's key prefix added to the transport options
# Django's settings give (the settings have no variable for it).
WORKER_MAIN = """
import os, sys
from project.celery import app
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "global_keyprefix": os.environ["HERALD_TEST_REDIS_KEY_PREFIX"],
}
app.worker_main(sys.argv[1:])
"""


@contextmanager
def celery_worker(
    broker: Broker,
    *,
    env: dict[str, str] | None = None,
    pool: str = "threads",
    concurrency: int = 4,
) -> Iterator[Worker]:
    """Start a Celery worker (`WORKER_MAIN`) on the test database; stop it afterwards.

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
        "HERALD_TEST_REDIS_KEY_PREFIX": broker.key_prefix,
        "HERALD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DB_CONN_MAX_AGE": "0",
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
        prefix="celery-worker-", suffix=".log", delete=False
    )
    command = [
        sys.executable, "-c", WORKER_MAIN, "worker",
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
