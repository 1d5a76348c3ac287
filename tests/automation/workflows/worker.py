"""A real Celery worker subprocess on a real Redis broker, for the workflow e2e tests.

Each pytest-xdist worker gets its own Redis db (7, 8 or 9) and queue name, so
parallel runs never consume each other's messages. The test process itself
switches the Celery app from inline execution to the broker for the duration
of the fixture, so `transaction.on_commit` enqueues go to Redis exactly as in
production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from django.db import connection

from project.celery import app

ROOT = Path(__file__).resolve().parents[3]
REDIS_DBS = (7, 8, 9)


def _xdist_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def broker_url() -> str:
    db = REDIS_DBS[_xdist_index() % len(REDIS_DBS)]
    return f"redis://127.0.0.1:6379/{db}"


def queue_name() -> str:
    return f"herald-wf-test-{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}-{os.getpid()}"


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


# The worker consumes only this test's queue, and the tasks it enqueues itself
# (a run's actions) go to the same queue.
WORKER_MAIN = """
import sys
from project.celery import app
queue = sys.argv[1]
app.conf.task_default_queue = queue
app.worker_main(["worker", "-P", "solo", "-Q", queue, "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "-l", "warning"])
"""


class Worker:
    """One `celery worker` process (solo pool: tasks run in the process we can kill)."""

    def __init__(self, queue: str, env: dict[str, str]) -> None:
        self.queue = queue
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "var" / f"{queue}.log"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-c", WORKER_MAIN, self.queue],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no ack, no cleanup — a crashed machine."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _reset_connections() -> None:
    """Forget pooled broker connections so the next enqueue uses the current broker_url."""
    # Dropped, not closed: kombu keeps pools per broker URL and would hand a
    # closed one back to the next test.
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def celery_on_redis(**settings_env: str) -> Iterator[Callable[[], Worker]]:
    """Route this process's enqueues to Redis; yield a factory of worker subprocesses."""
    url, queue = broker_url(), queue_name()
    client = redis.Redis.from_url(url)
    client.delete(queue)
    saved: dict[str, Any] = {
        "broker_url": app.conf.broker_url,
        "task_always_eager": app.conf.task_always_eager,
        "task_default_queue": app.conf.task_default_queue,
    }
    app.conf.update(broker_url=url, task_always_eager=False, task_default_queue=queue)
    _reset_connections()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": url,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        **settings_env,
    }
    workers: list[Worker] = []

    def start_worker() -> Worker:
        worker = Worker(queue, env)
        worker.start()
        workers.append(worker)
        return worker

    try:
        yield start_worker
    finally:
        for worker in workers:
            worker.stop()
        app.conf.update(**saved)
        _reset_connections()
        client.delete(queue, f"{queue}.unacked", "unacked", "unacked_index")
        client.close()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll a real subprocess's progress (bounded); fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
