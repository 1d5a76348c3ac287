"""A real Celery worker subprocess for end-to-end tests (reusable by any area).

    with celery_broker() as broker, celery_worker(broker) as worker:
        ... create rows in a transactional_db test; the worker sees committed rows ...

The worker runs `celery -A project worker` against the pytest test database and a
Redis database of this test process:
- CELERY_TEST_BROKER_URL, if set (scripts/test sets one), is used by every xdist worker;
- otherwise redis://127.0.0.1:6379/<db> with db taken from HERALD_TEST_REDIS_DBS
  (default "1,2,3": gw0 -> 1, gw1 -> 2, no xdist -> 3; remap by setting it).
The queue name includes the xdist worker id too, so processes sharing a Redis db never
take each other's messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu.pools
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def broker_url_for_this_process() -> str:
    explicit = os.environ.get("CELERY_TEST_BROKER_URL")
    if explicit:
        return explicit
    dbs = [int(d) for d in os.environ.get("HERALD_TEST_REDIS_DBS", "1,2,3").split(",")]
    worker = xdist_worker()
    if worker.startswith("gw") and worker[2:].isdigit():
        index = int(worker[2:]) % max(len(dbs) - 1, 1)
    else:
        index = len(dbs) - 1
    return f"redis://127.0.0.1:6379/{dbs[index]}"


@dataclass
class Broker:
    url: str
    queue: str


def broker_for_this_process() -> Broker:
    return Broker(
        url=broker_url_for_this_process(), queue=f"herald-test-{xdist_worker() or 'main'}"
    )


@contextmanager
def celery_broker() -> Iterator[Broker]:
    """Point this process's Celery app at the test Redis (not eager) for the duration."""
    from project.celery import app

    broker = Broker(
        url=broker_url_for_this_process(), queue=f"herald-test-{xdist_worker() or 'main'}"
    )
    saved = {
        key: app.conf.get(key) for key in ("broker_url", "task_always_eager", "task_default_queue")
    }
    app.conf.update(broker_url=broker.url, task_always_eager=False, task_default_queue=broker.queue)
    _reset_pool(app)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(broker.queue)  # nothing left over from a crash
    try:
        yield broker
    finally:
        _reset_pool(app)
        app.conf.update(saved)


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
    broker: Broker, *, env: dict[str, str] | None = None, concurrency: int = 4
) -> Iterator[Worker]:
    """Start `celery -A project worker` on the test database; stop it afterwards."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    worker_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker.url,
        "HERALD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DB_CONN_MAX_AGE": "0",
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
        prefix="celery-worker-", suffix=".log", delete=False
    )
    command = [
        sys.executable, "-m", "celery", "-A", "project", "worker",
        "--pool", "threads", "--concurrency", str(concurrency),
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
