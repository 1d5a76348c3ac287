"""Benchmark: the scheduler claiming 10,000 due schedules out of 100,000, with 1 and 2 processes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench \
        .venv/bin/python bench/schedules.py

Creates 100,000 active schedules (each with its endpoint) of which 10,000 are due in
the same second T, then measures how long dispatch_due_schedules(T) takes to claim
them, insert their runs and create their callback deliveries — once with one
scheduler process, once with two started together — and counts duplicate
runs/deliveries (must be 0). Nothing is sent: a burst this size is left to the
delivery dispatcher (HERALD_SCHEDULE_ENQUEUE_MAX). The database named by
DATABASE_URL is wiped of schedules, their endpoints and deliveries: use a
benchmark database. Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

T = datetime(2030, 1, 7, 9, 0, 0, tzinfo=UTC)  # a Monday 09:00: every interval below is due
INTERVALS = ["* * * * *", "*/5 * * * *", "0 * * * *", "0 9 * * *", "0 9 * * MON-FRI"]
ZONES = ["", "", "", "UTC", "Etc/GMT"]


def setup_django() -> None:
    import django
    from common import scratch_database

    scratch_database("herald_bench_schedules")

    django.setup()


def load(total: int, due: int) -> None:
    """Insert `total` schedules with endpoints in two set-based statements."""
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_schedulerun, automation_schedule, automation_deliveryattempt, "
            "automation_delivery, automation_endpoint_event_types, automation_endpoint CASCADE"
        )
        cursor.execute(
            """
            INSERT INTO automation_endpoint (id, kind, url, description, active, disabled_reason,
                secret, previous_secret, created_at, updated_at)
            SELECT lpad(to_hex(g), 26, '0'), 'schedule', 'https://93.184.215.14/cb/' || g, '',
                true, '', 'whsec_' || md5(g::text), '', %s, %s
            FROM generate_series(1, %s) AS g
            """,
            [T, T, total],
        )
        cursor.execute(
            """
            INSERT INTO automation_schedule (id, owner, end_date, interval, timezone,
                callback_url, context, tags, status, next_run_at, last_run_at, created_date,
                updated_at, endpoint_id)
            SELECT lpad(to_hex(g), 26, '0'), 'owner' || (g %% 500) || '@example.com',
                %s, (%s::text[])[1 + g %% 5], (%s::text[])[1 + g %% 5],
                'https://93.184.215.14/cb/' || g,
                jsonb_build_object('user', g, 'plan', 'gold'), '["prod"]'::jsonb, 'ACTIVE',
                CASE WHEN g <= %s THEN %s ELSE %s END, NULL, %s, %s, lpad(to_hex(g), 26, '0')
            FROM generate_series(1, %s) AS g
            """,
            [
                T + timedelta(days=365),
                INTERVALS,
                ZONES,
                due,
                T,
                T + timedelta(hours=6),
                T - timedelta(days=1),
                T,
                total,
            ],
        )
        cursor.execute("VACUUM ANALYZE automation_schedule")
        cursor.execute("VACUUM ANALYZE automation_endpoint")


def reset(due: int) -> None:
    """Undo a measured run: no runs or deliveries, the `due` schedules due at T again."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE automation_schedulerun, automation_deliveryattempt CASCADE")
        cursor.execute("DELETE FROM automation_delivery")
        cursor.execute(
            "UPDATE automation_schedule SET next_run_at = %s, last_run_at = NULL, "
            "status = 'ACTIVE' WHERE id <= lpad(to_hex(%s), 26, '0')",
            [T, due],
        )
        cursor.execute("VACUUM ANALYZE automation_schedule")
        cursor.execute("VACUUM ANALYZE automation_delivery")
        cursor.execute("VACUUM ANALYZE automation_schedulerun")


def counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM automation_schedulerun")
        runs = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM automation_delivery")
        deliveries = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM automation_schedulerun "
            "GROUP BY schedule_id, scheduled_for HAVING count(*) > 1) d"
        )
        duplicate_runs = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM automation_delivery "
            "GROUP BY endpoint_id HAVING count(*) > 1) d"
        )
        duplicate_deliveries = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM automation_delivery d WHERE NOT EXISTS "
            "(SELECT 1 FROM automation_schedulerun r WHERE r.delivery_id = d.id)"
        )
        orphans = cursor.fetchone()[0]
    return {
        "runs": runs,
        "deliveries": deliveries,
        "duplicate_runs": duplicate_runs,
        "duplicate_deliveries": duplicate_deliveries,
        "deliveries_without_run": orphans,
    }


def worker(barrier: Any, results: Any) -> None:
    """One scheduler process: Django set up and connected before the barrier, then one tick."""
    setup_django()
    from automation.schedules.scheduler import dispatch_due_schedules

    # A scheduler process is long-lived (it ticks every second): warm it up with a tick at
    # which nothing is due, so imports and the connection's caches are not measured.
    dispatch_due_schedules(T - timedelta(days=2))
    barrier.wait(timeout=300)
    started = time.time()
    fired = dispatch_due_schedules(T)
    results.put((os.getpid(), started, time.time(), fired))


def run_processes(n: int) -> tuple[float, list[int]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(n)
    results = context.Queue()
    processes = [context.Process(target=worker, args=(barrier, results)) for _ in range(n)]
    for process in processes:
        process.start()
    rows = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    elapsed = max(r[2] for r in rows) - min(r[1] for r in rows)
    return elapsed, [r[3] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings

    if "bench" not in settings.DATABASES["default"]["NAME"]:
        sys.exit("Refusing to wipe a database whose name does not contain 'bench'.")
    print(f"cpus={os.cpu_count()} (shared with other work: figures are noisy)")
    print(
        f"claim chunk={settings.HERALD_SCHEDULE_CLAIM_CHUNK}, "
        f"enqueue max={settings.HERALD_SCHEDULE_ENQUEUE_MAX}"
    )
    started = time.perf_counter()
    load(args.total, args.due)
    print(
        f"loaded {args.total:,} schedules ({args.due:,} due at {T.isoformat()}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for n in (1, 2):
        reset(args.due)
        elapsed, fired = run_processes(n)
        result = counts()
        ok = (
            result["runs"] == args.due
            and result["deliveries"] == args.due
            and result["duplicate_runs"] == 0
            and result["duplicate_deliveries"] == 0
            and result["deliveries_without_run"] == 0
        )
        print(
            f"{n} scheduler process(es): {args.due:,} due claimed + runs + deliveries in "
            f"{elapsed:.3f} s (per process: {fired}); runs={result['runs']:,} "
            f"deliveries={result['deliveries']:,} duplicate runs={result['duplicate_runs']} "
            f"duplicate deliveries={result['duplicate_deliveries']} "
            f"orphan deliveries={result['deliveries_without_run']} -> "
            f"{'OK' if ok and elapsed < 2 else 'MISSED GOAL' if ok else 'WRONG'}"
        )


if __name__ == "__main__":
    main()
