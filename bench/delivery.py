"""Delivery benchmark: real Celery workers, real Redis, local receivers on 127.0.0.1.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench_delivery \
    BENCH_BROKER_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python bench/delivery.py [--deliveries 3000] [--processes 2] [--threads 32]

Prints:
  1. throughput: deliveries/s to a fast receiver with one worker machine's default worker
     settings (--processes worker processes of `--pool threads --concurrency --threads`;
     the default is the documented recommendation: one process per CPU, 32 threads each);
  2. isolation: the p50/p99 delay (created -> received) of deliveries to a fast endpoint
     at a steady rate, alone and while another endpoint takes 10 s to answer every
     request (and keeps getting deliveries), and the difference of the p99s.
The dispatcher (Celery beat's job in production) runs in this process every second.

The database named by DATABASE_URL is migrated and its delivery tables are TRUNCATED:
never point it at data you want to keep. Every loop is bounded in count and time.
This prints figures; it asserts nothing (not a test).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/3")
QUEUE = "herald-bench"
os.environ["CELERY_BROKER_URL"] = BROKER
os.environ["HERALD_OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"
os.environ.setdefault("HERALD_TEST_PORTS", "8380-8399")

from common import scratch_database  # noqa: E402

scratch_database("herald_bench_delivery")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from automation.webhooks.deliveries import deliveries_enqueue_on_commit, delivery_build  # noqa: E402
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint  # noqa: E402
from automation.webhooks.sender import dispatch_due_deliveries  # noqa: E402
from automation.webhooks.services import endpoint_create  # noqa: E402
from project.celery import all_queues, app  # noqa: E402
from tests.receiver import Receiver, Reply, local_receiver  # noqa: E402

app.conf.task_default_queue = QUEUE


def start_workers(processes: int, threads: int, log_dir: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "DB_CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING"}
    workers = []
    for i in range(processes):
        log = open(log_dir / f"worker-{i}.log", "wb")  # noqa: SIM115
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "project",
                    "worker",
                    "--pool",
                    "threads",
                    "--concurrency",
                    str(threads),
                    "-Q",
                    ",".join(all_queues(QUEUE)),
                    "-n",
                    f"bench{i}@%h",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    # Ready = a ping answered by every worker (bounded wait).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= processes:
            return workers
    raise SystemExit("workers did not start; see " + str(log_dir))


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)


class Dispatcher(threading.Thread):
    """What Celery beat does in production: run the due-deliveries job every second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                dispatch_due_deliveries()
            finally:
                connection.close()


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_deliveryattempt, automation_delivery, "
            "automation_endpoint_event_types, automation_endpoint CASCADE"
        )
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


def create(endpoint: Endpoint, n: int, *, enqueue: bool = True, batch: int = 1000) -> None:
    """Bulk-create deliveries as ingestion does (one INSERT, one publish per row after
    commit); enqueue=False leaves them for the dispatcher, as after a broker outage."""
    for start in range(0, n, batch):
        now = timezone.now()
        sent_at = time.time()
        rows = [
            delivery_build(endpoint, {"i": i, "t": sent_at}, None, None, now)
            for i in range(start, min(start + batch, n))
        ]
        if not enqueue:
            for row in rows:
                row.queued_until = None
        with transaction.atomic():
            Delivery.objects.bulk_create(rows)
            if enqueue:
                deliveries_enqueue_on_commit([r.pk for r in rows])


def wait_succeeded(endpoint: Endpoint, n: int, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        done = Delivery.objects.filter(endpoint=endpoint, status="succeeded").count()
        if done >= n:
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"only {done} of {n} deliveries succeeded within {limit:g} s")


def delays(receiver: Receiver, since: int = 0) -> list[float]:
    out = []
    for request in receiver.requests[since:]:
        sent_at = json.loads(request.body)["t"]
        out.append(request.wall_received_at - sent_at)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of these processes and their threads so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Backends of this database (the workers' connections), for their CPU share."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def steady(endpoint: Endpoint, rate: float, seconds: float) -> int:
    """Create deliveries at `rate`/s for `seconds` (in 0.1 s ticks); return how many."""
    per_tick = max(1, int(rate / 10))
    total = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        create(endpoint, per_tick)
        total += per_tick
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0, help="fast deliveries/s, phase 2")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of phase 2 runs")
    parser.add_argument("--slow-deliveries", type=int, default=200)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    reset()
    log_dir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    print(f"CPUs: {os.cpu_count()} (shared with other work: figures are noisy)")
    print(
        f"workers: {args.processes} x `celery worker --pool threads --concurrency "
        f"{args.threads}`; endpoint concurrency limit "
        f"{os.environ.get('HERALD_DELIVERY_ENDPOINT_CONCURRENCY', '16')}; broker {BROKER}"
    )
    workers = start_workers(args.processes, args.threads, log_dir)
    dispatcher = Dispatcher()
    dispatcher.start()
    try:
        with local_receiver() as fast, local_receiver() as slow:
            fast_ep, _ = endpoint_create(url=fast.url("/fast"), kind="workflow")
            # Warm-up: connections, imports.
            create(fast_ep, 50)
            wait_succeeded(fast_ep, 50, 60)

            # 1. Throughput: rows already in the database, handed out by the dispatcher.
            base = Delivery.objects.filter(endpoint=fast_ep, status="succeeded").count()
            create(fast_ep, args.deliveries, enqueue=False)
            worker_pids = [w.pid for w in workers]
            db_pids = postgres_pids()  # the workers' connections stay open (CONN_MAX_AGE)
            cpu_before = cpu_seconds(worker_pids), cpu_seconds(db_pids)
            started = time.monotonic()
            dispatch_due_deliveries()
            wait_succeeded(fast_ep, base + args.deliveries, 300)
            elapsed = time.monotonic() - started
            worker_cpu = cpu_seconds(worker_pids) - cpu_before[0]
            db_cpu = cpu_seconds(db_pids) - cpu_before[1]
            per = (worker_cpu + db_cpu) / args.deliveries
            print(
                f"1. throughput: {args.deliveries} due deliveries sent in {elapsed:.2f} s = "
                f"{args.deliveries / elapsed:.0f} deliveries/s"
            )
            print(
                f"   CPU per delivery: workers {worker_cpu / args.deliveries * 1000:.2f} ms + "
                f"PostgreSQL {db_cpu / args.deliveries * 1000:.2f} ms = {per * 1000:.2f} ms, "
                f"i.e. ~{1 / per:.0f} deliveries/s per fully available core "
                f"(load-independent; receiver and Redis not counted)"
            )

            # 2. Isolation: fast alone, then fast while a slow endpoint hangs 10 s a request.
            first = len(fast.requests)
            n = steady(fast_ep, args.rate, args.seconds)
            wait_succeeded(fast_ep, first + n, 120)
            alone = delays(fast, first)

            slow.reply(Reply(status=200, delay=10.0))
            slow_ep, _ = endpoint_create(url=slow.url("/slow"), kind="workflow")
            create(slow_ep, args.slow_deliveries)
            time.sleep(1.0)  # the slow endpoint now holds its share of worker threads
            first = len(fast.requests)
            n = steady(fast_ep, args.rate, args.seconds)
            wait_succeeded(fast_ep, first + n, 120)
            beside_slow = delays(fast, first)
            slow_in_flight = len(slow.requests)

            print(f"2. fast endpoint at {args.rate:g}/s for {args.seconds:g} s, created->received:")
            print(
                f"   alone:            n={len(alone)} p50={pct(alone, 0.5) * 1000:.0f} ms "
                f"p99={pct(alone, 0.99) * 1000:.0f} ms"
            )
            print(
                f"   beside slow (10 s/request, {args.slow_deliveries} queued, "
                f"{slow_in_flight} requests reached it): n={len(beside_slow)} "
                f"p50={pct(beside_slow, 0.5) * 1000:.0f} ms "
                f"p99={pct(beside_slow, 0.99) * 1000:.0f} ms"
            )
            added = pct(beside_slow, 0.99) - pct(alone, 0.99)
            print(
                f"   the slow endpoint added {added * 1000:.0f} ms to the fast p99 (goal <= 1000)"
            )
            attempts = DeliveryAttempt.objects.count()
            print(f"   attempts logged: {attempts}; worker logs: {log_dir}")
    finally:
        dispatcher.stop.set()
        stop_workers(workers)


if __name__ == "__main__":
    main()
