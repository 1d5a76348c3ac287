"""Deleting a customer with 100,000 events: time and peak memory, Collector vs set-based.

    .venv/bin/python bench/customer_delete.py [--events 100000] [--background 400000]
        [--runs 3]

1. Migrates its own database (herald_bench_customer_delete, or DATABASE_URL) and,
   unless it is there already, loads `--background` events of other customers with
   `manage.py generate_events`, then one customer with `--events` events of their
   own (COPY, ~3 property records each). One in five events of every customer gets
   a workflow run, one in ten a webhook delivery with one attempt.
2. Each measurement runs in a fresh child process, inside a transaction that is
   rolled back afterwards (so the same customer is deleted every time; the commit
   itself is not timed): `collector` is Django's `customer.delete()` (what
   customers.services.customer_delete did before), `service` is customer_delete.
3. Prints per run: seconds, queries, the child's peak RSS above its RSS before the
   delete, and whether exactly the customer's rows went (and the per-type event
   counters moved by exactly the customer's events).
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

ROOT = Path(__file__).resolve().parent.parent
TARGET = "bench-delete-target"
METHODS = ("collector", "service")


def setup_django() -> None:
    import django
    from common import scratch_database

    scratch_database("herald_bench_customer_delete")
    django.setup()


def load(events: int, background: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from customers.models import Customer
    from events_app.generation import Generator, ensure_event_types
    from events_app.management.commands.generate_events import CopyWriter

    call_command("migrate", verbosity=0)
    if Customer.objects.filter(external_id=TARGET).exists():
        print(f"Customer {TARGET} already loaded; skipping the load.")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM automation_workflow WHERE id = 'bench-workflow'")
            if cursor.fetchone() is None:  # an earlier load stopped before it
                automation_history()
        return
    began = time.monotonic()
    call_command("generate_events", events=background, seed=7, verbosity=0)
    target = Customer.objects.create(external_id=TARGET, email="target@example.com")
    now_ms = time.time_ns() // 1_000_000
    generator = Generator(
        rng=__import__("random").Random(11),
        types=ensure_event_types(4),
        customer_ids=[target.pk],
        start_ms=now_ms - 90 * 86_400_000,
        end_ms=now_ms,
        tag="target",
    )
    writer = CopyWriter()
    for chunk in generator.events(events, 20_000):
        writer.write(writer.prepare(chunk))
    automation_history()
    print(f"Loaded in {time.monotonic() - began:.0f} s.")


def automation_history() -> None:
    """Automation history for every customer, set-based: a subscription and a workflow;
    runs for one event in five, deliveries (+1 attempt) for one in ten; then VACUUM."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO automation_endpoint (id, kind, url, description, active, "
            "disabled_reason, secret, previous_secret, created_at, updated_at) VALUES "
            "('bench-endpoint', 'subscription', 'https://example.com/hook', '', true, '', "
            "'whsec_x', '', now(), now())"
        )
        cursor.execute(
            "INSERT INTO automation_workflow (id, name, trigger_segments, conditions, actions, "
            "active, reentry, version, trigger_on_merged_events, created_at, updated_at) "
            "VALUES ('bench-workflow', 'bench', '[]', '{}', '[]', true, 'every_event', 1, "
            "false, now(), now())"
        )
        cursor.execute(
            "INSERT INTO automation_workflowrun (id, workflow_id, event_id, customer_id, "
            "workflow_version, actions, status, position, outcomes, error, explanation, "
            "created_at) SELECT id, 'bench-workflow', id, customer_id, 1, '[]', 'succeeded', "
            "0, '[]', '', '{}', created_at FROM events_app_event "
            "WHERE ('x' || right(id, 4))::bit(16)::int % 5 = 0"
        )
        cursor.execute(
            "INSERT INTO automation_delivery (id, endpoint_id, event_id, customer_id, "
            "message_id, payload, status, attempt_count, retry_step, created_at, last_error) "
            "SELECT id, 'bench-endpoint', id, customer_id, 'msg_' || id, '{}', 'succeeded', 1, "
            "0, created_at, '' FROM events_app_event "
            "WHERE ('x' || right(id, 4))::bit(16)::int % 10 = 1"
        )
        cursor.execute(
            "INSERT INTO automation_deliveryattempt (delivery_id, number, started_at, "
            "duration_ms, error, outcome, response_excerpt) SELECT id, 1, created_at, 12, '', "
            "'succeeded', '' FROM automation_delivery"
        )
    # Every table the load wrote, as autovacuum would leave them (this machine runs
    # without it): the triggers' ref and counter tables too, whose statistics decide how
    # a large delete's trigger statements are planned.
    with connection.cursor() as cursor:
        for table in TOUCHED_TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")


# The tables a load writes and a customer's delete touches.
TOUCHED_TABLES = (
    "customers_customer",
    "events_app_event",
    "events_app_propertyrecord",
    "events_app_eventref",
    "events_app_eventcount",
    "events_app_eventhourcount",
    "automation_workflowrun",
    "automation_delivery",
    "automation_deliveryattempt",
)


def table_counts() -> dict[str, int]:
    from django.db import connection

    tables = (
        "customers_customer",
        "events_app_event",
        "events_app_propertyrecord",
        "automation_workflowrun",
        "automation_delivery",
        "automation_deliveryattempt",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables))
        return dict(zip(tables, cursor.fetchone(), strict=True))


def customer_counts(customer_id: str) -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM events_app_event WHERE customer_id = %(c)s), "
            "(SELECT count(*) FROM events_app_propertyrecord r JOIN events_app_event e "
            " ON e.id = r.event_id WHERE e.customer_id = %(c)s), "
            "(SELECT count(*) FROM automation_workflowrun WHERE customer_id = %(c)s), "
            "(SELECT count(*) FROM automation_delivery WHERE customer_id = %(c)s), "
            "(SELECT count(*) FROM automation_deliveryattempt a JOIN automation_delivery d "
            " ON d.id = a.delivery_id WHERE d.customer_id = %(c)s)",
            {"c": customer_id},
        )
        row = cursor.fetchone()
    names = ("events", "property records", "workflow runs", "deliveries", "attempts")
    return dict(zip(names, row, strict=True))


def event_totals() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(events), 0) FROM events_app_eventcount")
        return int(cursor.fetchone()[0])


def status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's high-water mark of this process (Linux) and return the RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return status_kb("VmRSS")


def peak_rss() -> int:
    """The highest RSS in KiB since reset_peak_rss()."""
    return status_kb("VmHWM")


def child(method: str) -> None:
    """One delete in this process; prints a JSON line. Rolled back at the end."""
    from django.db import connection, transaction

    from customers.models import Customer
    from customers.services import customer_delete

    queries = 0

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    customer = Customer.objects.get(external_id=TARGET)
    before, own, counters = table_counts(), customer_counts(customer.pk), event_totals()
    rss_before = reset_peak_rss()
    with transaction.atomic():
        with connection.execute_wrapper(count):
            began = time.perf_counter()
            if method == "collector":
                customer.delete()
            else:
                customer_delete(customer=customer)
            seconds = time.perf_counter() - began
        rss_peak = peak_rss()
        after = table_counts()
        gone = {table: before[table] - after[table] for table in before}
        expected = dict(
            zip(before, (1, *own.values()), strict=True)  # the customer row, then its rows
        )
        if method != "collector":
            # The service keeps the deliveries and their attempts, redacted (the privacy
            # design of every delete); Django's collector deletes them.
            expected.update({"automation_delivery": 0, "automation_deliveryattempt": 0})
        exact = gone == expected and counters - event_totals() == own["events"]
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
            }
        )
    )


def run_child(script: str, method: str) -> dict[str, Any]:
    """Run `script --child method` in a fresh process; the JSON line it ends with."""
    out = subprocess.run(
        [sys.executable, script, "--child", method],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--background", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_django()
    if args.child:
        child(args.child)
        return
    load(args.events, args.background)
    results: dict[str, list[dict[str, object]]] = {m: [] for m in args.methods.split(",")}
    for n in range(args.runs):
        for method in results:
            result = run_child(__file__, method)
            results[method].append(result)
            if n == 0 and method == next(iter(results)):
                print(f"The customer has {result['own']}.")
            print(
                f"  {method:<9} {result['seconds']:7.2f} s  {result['queries']:>6} queries  "
                f"peak RSS {result['rss_peak_mb']:6.0f} MB (+{result['rss_growth_mb']:.0f} MB "
                f"during the delete)  exact: {result['exact']}"
            )
    for method, runs in results.items():
        print(
            f"{method:<9} median {statistics.median(r['seconds'] for r in runs):.2f} s, "  # type: ignore[misc]
            f"max RSS growth {max(r['rss_growth_mb'] for r in runs):.0f} MB"  # type: ignore[type-var]
        )


if __name__ == "__main__":
    main()
