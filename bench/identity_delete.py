"""A privacy `delete` of one customer with many events among many: time, queries, memory,
against the floor of bare SQL deleting the same rows.

    .venv/bin/python bench/identity_delete.py [--events 1000000] [--background 9000000]
        [--runs 3]

The identity benchmark's part "delete of a customer with 1 M events among 10 M (goal
≤ 10 s, constant memory)": `bench/identity.py --only delete` runs it.

1. Loads its own database (herald_bench_identity_10m, or DATABASE_URL) with the
   set-based loader of bench/identity_load.py (unless the customer is there already):
   the customer's events over 90 days, so several month partitions, the others' over
   120; runs for one event in five, deliveries with an attempt for one in ten.
2. Each run, in fresh child processes inside transactions rolled back afterwards (the
   same customer every time), first the floor, then Herald:
   - floor: bare SQL removing exactly the rows Herald removes, one statement per table
     in its best form (the property records a month partition at a time), the
     deliveries redacted by one UPDATE, and the deferred constraint checks forced;
   - herald: files a `delete` request for the customer's external id and runs it with
     customers.privacy.services.privacy_request_run, the worker's call, then forces the
     deferred constraint checks (what its commit would run).
3. Prints per run: seconds, queries, the child's peak RSS growth, and whether exactly
   the customer's rows went (their deliveries kept, redacted) with the event counters
   moved by exactly their events, and the request's counts; then Herald against the
   floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import customer_delete as base
import identity_load

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    import django
    from common import scratch_database

    scratch_database("herald_bench_identity_10m")
    django.setup()


def load(events: int, background: int) -> None:
    from datetime import UTC, datetime

    from django.core.management import call_command

    from customers.models import Customer

    call_command("migrate", verbosity=0)
    if Customer.objects.filter(external_id=base.TARGET).exists():
        print(f"Customer {base.TARGET} already loaded; skipping the load.")
        return
    identity_load.load(
        target_external_id=base.TARGET,
        events=events,
        background=background,
        now=datetime.now(tz=UTC),
    )


# The deliveries' payload after a privacy delete (automation.privacy.REDACTED_PAYLOAD).
REDACTED = '{"redacted": "The customer was deleted (privacy request)."}'


def floor_delete(customer_id: str) -> None:
    """The floor: bare SQL removing exactly what the privacy delete removes (the bench's
    data has no pending deliveries, aliases, memberships or merges), each table's
    statement in its best form, the property records a month partition at a time."""
    from django.db import connection

    from events_app.privacy import _month_windows, _window

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE automation_delivery SET payload = %s, event_id = NULL, customer_id = NULL "
            "WHERE customer_id = %s",
            [REDACTED, customer_id],
        )
        for start, end in _month_windows([customer_id]):
            bounds, params = _window("created_at", start, end)
            cursor.execute(
                f"DELETE FROM events_app_propertyrecord WHERE {bounds} "
                "AND event_id = ANY(ARRAY(SELECT id FROM events_app_event "
                f"WHERE customer_id = %s AND {bounds}))",
                [*params, customer_id, *params],
            )
        cursor.execute("DELETE FROM events_app_event WHERE customer_id = %s", [customer_id])
        cursor.execute("DELETE FROM automation_workflowrun WHERE customer_id = %s", [customer_id])
        cursor.execute("DELETE FROM customers_customer WHERE id = %s", [customer_id])
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def herald_delete() -> dict[str, int]:
    """The privacy delete as the worker runs it; its counts."""
    from django.db import connection

    from customers.privacy.models import PrivacyRequest
    from customers.privacy.services import privacy_request_create, privacy_request_run

    request = privacy_request_create(
        type="delete", identifier_kind="external_id", value=base.TARGET
    )
    privacy_request_run(request_id=request.pk)
    with connection.cursor() as cursor:  # the deferred checks its commit would run
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    request = PrivacyRequest.objects.get(pk=request.pk)
    assert request.status == "done", request.error
    return dict(request.counts)


def child(method: str) -> None:
    """One privacy delete (or the floor's SQL) in this process; prints a JSON line.
    Rolled back at the end."""
    from django.db import connection, transaction

    from customers.models import Customer

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
    before, own = base.table_counts(), base.customer_counts(customer.pk)
    counters = base.event_totals()
    counts: dict[str, int] = {}
    rss_before = base.reset_peak_rss()
    with transaction.atomic():
        with connection.execute_wrapper(count):
            began = time.perf_counter()
            if method == "floor":
                floor_delete(customer.pk)
            else:
                counts = herald_delete()
            seconds = time.perf_counter() - began
        rss_peak = base.peak_rss()
        after = base.table_counts()
        redacted = _redacted_deliveries()
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
            gone == expected
            and redacted == own["deliveries"]
            and counters - base.event_totals() == own["events"]
            and (method == "floor" or counts.get("deliveries_redacted") == own["deliveries"])
        )
        transaction.set_rollback(True)
    print(
        json.dumps(
            {
                "method": method,
                "seconds": seconds,
                "queries": queries,
                "rss_growth_mb": (rss_peak - rss_before) / 1024,
                "rss_peak_mb": rss_peak / 1024,
                "exact": exact,
                "own": own,
                "counts": counts,
                "slowest": sorted(timings, reverse=True)[:8],
            }
        )
    )


def _redacted_deliveries() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM automation_delivery "
            "WHERE event_id IS NULL AND customer_id IS NULL AND payload = %s",
            [REDACTED],
        )
        return int(cursor.fetchone()[0])


def explain() -> None:
    """The plans of the biggest statements of Herald's delete: each month's property
    records through the records' (event_id, …) index of that partition only, the events
    through the per-partition customer index (event_customer_idx)."""
    from django.db import connection

    from customers.models import Customer
    from events_app.privacy import _month_windows, _window

    customer_id = Customer.objects.get(external_id=base.TARGET).pk
    start, end = _month_windows([customer_id])[-2]
    bounds, params = _window("created_at", start, end)
    with connection.cursor() as cursor:
        for sql, args in (
            (
                f"DELETE FROM events_app_propertyrecord WHERE {bounds} AND event_id = ANY(ARRAY("
                f"SELECT id FROM events_app_event WHERE customer_id = %s AND {bounds}))",
                [*params, customer_id, *params],
            ),
            ("DELETE FROM events_app_event WHERE customer_id = %s", [customer_id]),
        ):
            cursor.execute(f"EXPLAIN (COSTS OFF) {sql}", args)
            plan = [row[0].strip() for row in cursor.fetchall()]
            scans = sorted(
                {
                    line.split(" on ")[0] + " on " + line.split(" on ")[1].split()[0]
                    for line in plan
                    if "Scan" in line and " on " in line
                }
            )
            print(f"  {sql.split(' WHERE ')[0]}: {len(plan)} plan lines; scans: {', '.join(scans)}")


def vacuum() -> None:
    """VACUUM what a run touched (not timed). A delete rolled back still clears the
    all-visible bits of every page it touched and leaves its row versions to be
    checked: without it each run would start from a table in a worse shape than the
    one before (index-only scans no longer index-only), as autovacuum would not
    leave it."""
    from django.db import connection

    began = time.monotonic()
    with connection.cursor() as cursor:
        for table in base.TOUCHED_TABLES:
            cursor.execute(f"VACUUM {table}")
    print(f"  (VACUUM before the run: {time.monotonic() - began:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--background", type=int, default=9_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default="floor,herald")
    parser.add_argument("--child", choices=("floor", "herald"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_django()
    if args.child:
        child(args.child)
        return
    load(args.events, args.background)
    explain()
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods.split(",")}
    for n in range(args.runs):
        for method in results:
            vacuum()
            result = base.run_child(__file__, method)
            results[method].append(result)
            if n == 0:
                if method == next(iter(results)):
                    print(f"The customer has {result['own']}.")
                if result["counts"]:
                    print(f"The request's counts: {result['counts']}")
                print(f"Slowest statements of the first {method} run:")
                for seconds, sql in result["slowest"]:
                    print(f"  {seconds:6.2f} s  {sql}")
            print(
                f"  {method:<6} {result['seconds']:7.2f} s  {result['queries']:>4} queries  "
                f"peak RSS {result['rss_peak_mb']:6.0f} MB (+{result['rss_growth_mb']:.0f} MB "
                f"during the delete)  exact: {result['exact']}"
            )
    medians = {m: statistics.median(r["seconds"] for r in runs) for m, runs in results.items()}
    for method, runs in results.items():
        print(
            f"{method:<6} median {medians[method]:.2f} s, "
            f"max RSS growth {max(r['rss_growth_mb'] for r in runs):.0f} MB"
        )
    if {"floor", "herald"} <= medians.keys():
        # Per run pair (measured back to back), then the median: the machine's load moves
        # between runs, so a ratio of the two medians can pair a quiet run with a busy one.
        pairs = [
            h["seconds"] / f["seconds"]
            for f, h in zip(results["floor"], results["herald"], strict=True)
        ]
        print(
            f"herald / floor per run: {', '.join(f'{r:.2f}x' for r in pairs)}; median "
            f"{statistics.median(pairs):.2f}x; goal <= 10 s: "
            f"{'met' if medians['herald'] <= 10 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
