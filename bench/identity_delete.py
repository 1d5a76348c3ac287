"""A privacy `delete` of one customer with many events among many: time, queries, memory.

    .venv/bin/python bench/identity_delete.py [--events 1000000] [--background 9000000]
        [--runs 3]

The identity benchmark's part "delete of a customer with 1 M events among 10 M (goal
≤ 10 s, constant memory)": `bench/identity.py --only delete` runs it.

1. Loads its own database (herald_bench_identity_delete, or DATABASE_URL) as
   bench/customer_delete.py does (its loader: `generate_events` for the others, COPY
   for the customer's own events over 90 days, so several month partitions; runs for
   one event in five, deliveries with an attempt for one in ten).
2. Each run, in a fresh child process inside a transaction rolled back afterwards (the
   same customer every time; the commit is not timed): files a `delete` request for
   the customer's external id and runs it with customers.privacy.services.
   privacy_request_run, the worker's call.
3. Prints per run: seconds, queries, the child's peak RSS growth, and whether exactly
   the customer's rows went (their deliveries kept, redacted) with the event counters
   moved by exactly their events, and the request's counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import customer_delete as base

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    import django
    from common import scratch_database

    scratch_database("herald_bench_identity_delete")
    django.setup()


def child() -> None:
    """One privacy delete in this process; prints a JSON line. Rolled back at the end."""
    from django.db import connection, transaction

    from customers.models import Customer
    from customers.privacy.models import PrivacyRequest
    from customers.privacy.services import privacy_request_create, privacy_request_run

    queries = 0
    timings: list[tuple[float, str]] = []

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - began, " ".join(sql.split())[:90]))

    customer = Customer.objects.get(external_id=base.TARGET)
    before, own, counters = base.table_counts(), base.customer_counts(customer.pk), 0
    counters = base.event_totals()
    rss_before = base.reset_peak_rss()
    with transaction.atomic():
        with connection.execute_wrapper(count):
            began = time.perf_counter()
            request = privacy_request_create(
                type="delete", identifier_kind="external_id", value=base.TARGET
            )
            privacy_request_run(request_id=request.pk)
            seconds = time.perf_counter() - began
        rss_peak = base.peak_rss()
        request = PrivacyRequest.objects.get(pk=request.pk)
        after = base.table_counts()
        gone = {table: before[table] - after[table] for table in before}
        expected = {
            "customers_customer": 1,
            "events_app_event": own["events"],
            "events_app_propertyrecord": own["property records"],
            "automation_workflowrun": own["workflow runs"],
            "automation_delivery": 0,  # kept as redacted rows
            "automation_deliveryattempt": 0,
        }
        exact = (
            request.status == "done"
            and gone == expected
            and request.counts["deliveries_redacted"] == own["deliveries"]
            and counters - base.event_totals() == own["events"]
        )
        transaction.set_rollback(True)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "queries": queries,
                "rss_growth_mb": (rss_peak - rss_before) / 1024,
                "rss_peak_mb": rss_peak / 1024,
                "exact": exact,
                "own": own,
                "counts": request.counts,
                "slowest": sorted(timings, reverse=True)[:5],
            }
        )
    )


def explain() -> None:
    """The plans of the delete's two biggest statements, to show they use the per-partition
    customer index (event_customer_idx) rather than scanning the events."""
    from django.db import connection

    from customers.models import Customer

    customer_id = Customer.objects.get(external_id=base.TARGET).pk
    with connection.cursor() as cursor:
        for sql in (
            "DELETE FROM events_app_propertyrecord WHERE event_id IN "
            "(SELECT id FROM events_app_event WHERE customer_id = %s)",
            "DELETE FROM events_app_event WHERE customer_id = %s",
        ):
            cursor.execute(f"EXPLAIN (COSTS OFF) {sql}", [customer_id])
            plan = [row[0].strip() for row in cursor.fetchall()]
            scans = sorted(
                {
                    line.split(" on ")[0] + " on " + line.split(" on ")[1].split()[0]
                    for line in plan
                    if "Scan" in line and " on " in line
                }
            )
            print(f"  {sql.split(' WHERE ')[0]}: {len(plan)} plan lines; scans: {', '.join(scans)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--background", type=int, default=9_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_django()
    if args.child:
        child()
        return
    base.load(args.events, args.background)
    explain()
    runs: list[dict[str, object]] = []
    for n in range(args.runs):
        out = subprocess.run(
            [sys.executable, __file__, "--child"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            env=os.environ,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(result)
        if n == 0:
            print(f"The customer has {result['own']}.")
            print(f"The request's counts: {result['counts']}")
            print("Slowest statements of the first run:")
            for seconds, sql in result["slowest"]:
                print(f"  {seconds:6.2f} s  {sql}")
        print(
            f"  privacy delete {result['seconds']:7.2f} s  {result['queries']:>4} queries  "
            f"peak RSS {result['rss_peak_mb']:6.0f} MB (+{result['rss_growth_mb']:.0f} MB "
            f"during the delete)  exact: {result['exact']}"
        )
    print(
        f"median {statistics.median(r['seconds'] for r in runs):.2f} s, "  # type: ignore[misc]
        f"max RSS growth {max(r['rss_growth_mb'] for r in runs):.0f} MB"  # type: ignore[type-var]
    )


if __name__ == "__main__":
    main()
