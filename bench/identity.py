"""Identity: identify calls per second against a table of 1 M customers, and the merge of
two customers with 100 k events each (goal: at most 2 s).

    .venv/bin/python bench/identity.py [--only identify,merge,export,delete] [--customers 1000000]
        [--calls 300] [--events 100000] [--runs 3]
        [--delete-events 1000000] [--delete-among 10000000]

Each part is a function in PARTS (name -> part); --only runs the named ones in that
order. A part gets the parsed arguments and prints its own figures; parts added later
(a privacy delete, …) register themselves the same way.

Setup (every run): migrates its own database (herald_bench_identity, or DATABASE_URL)
and, unless it holds --customers already, inserts them with one INSERT … SELECT from
generate_series: every other customer is anonymous (an anonymous id, no external id),
the others identified. VACUUM ANALYZE.

- identify: through the service (customers.identity.services.customer_identify, what
  POST /customers/identify calls; no HTTP), --calls each of: `new` (an anonymous
  customer takes a new external id), `merge` (an anonymous customer is merged into an
  identified one, which has a few events), `repeat` (the same call again: nothing
  changes). Each call commits; each call of `new` and `merge` consumes customers, so
  the table shrinks by a few hundred per run.
- merge: two customers with --events events each (COPY, ~3 property records per
  event), a workflow run for one event in five; customer_merge of one into the other
  inside a transaction rolled back afterwards (the same pair every run), then its
  undo in the same way; seconds per run, the median against the goal. Each run first
  measures the floor of this design on the same pair: a bare `UPDATE … SET
  customer_id` of the events, then of the runs, each with the deferred foreign-key
  checks it queues (forced), rolled back; the merge's median against it.
- export: a privacy export of the merge pair's primary (its --events events, their
  property records and runs), written to its stored parts, then read back as the
  download streams it; in a fresh child process per run: seconds and the growth of
  the process's peak RSS for each, inside a transaction rolled back afterwards.
- delete (only when named: its load is long): a privacy delete of a customer with
  --delete-events events among --delete-among (goal: at most 10 s, constant memory)
  against the floor of bare SQL, run by bench/identity_delete.py in its own database
  (herald_bench_identity_10m).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

MERGE_GOAL_S = 2.0
PAIR = ("bench-merge-primary", "bench-merge-secondary")

Part = Callable[[argparse.Namespace], None]
PARTS: dict[str, Part] = {}


def part(name: str) -> Callable[[Part], Part]:
    def register(func: Part) -> Part:
        PARTS[name] = func
        return func

    return register


def setup(customers: int) -> None:
    import django
    from common import scratch_database

    scratch_database("herald_bench_identity")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(id) FROM customers_customer WHERE id LIKE 'b%%'")
        have, last = cursor.fetchone()
        # Identify consumes customers: new ones are numbered after the last one.
        start = int(last[1:], 16) + 1 if last else 1
        if have >= customers:
            print(f"{have:,} bench customers present.")
            return
        began = time.monotonic()
        # Ids 'b' + 25 hex digits: apart from ids Herald makes (time-ordered hex).
        cursor.execute(
            "INSERT INTO customers_customer (id, external_id, anonymous_id, email, attributes, "
            "tags, created_at, updated_at) "
            "SELECT 'b' || lpad(to_hex(n), 25, '0'), "
            "CASE WHEN n %% 2 = 1 THEN 'bench-user-' || n END, "
            "CASE WHEN n %% 2 = 0 THEN 'bench-visitor-' || n END, "
            "'', jsonb_build_object('n', n), '[]', now(), now() "
            "FROM generate_series(%s, %s) AS n",
            [start, start + customers - have - 1],
        )
        cursor.execute("VACUUM (ANALYZE) customers_customer")
    print(f"Inserted {customers - have:,} customers in {time.monotonic() - began:.0f} s.")


@part("identify")
def identify(args: argparse.Namespace) -> None:
    from django.db import connection

    from customers.identity.services import customer_identify
    from customers.models import Customer
    from events_app.models import Event

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT anonymous_id FROM customers_customer "
            "WHERE anonymous_id LIKE 'bench-visitor-%%' AND external_id IS NULL "
            "ORDER BY random() LIMIT %s",
            [args.calls * 2],
        )
        visitors = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT external_id FROM customers_customer WHERE external_id LIKE 'bench-user-%%' "
            "ORDER BY random() LIMIT %s",
            [args.calls],
        )
        users = [row[0] for row in cursor.fetchall()]
    if len(visitors) < args.calls * 2 or len(users) < args.calls:
        raise SystemExit("Not enough anonymous customers left: load more (--customers).")
    # The merged-into customers each get a few events (a merge moves real rows).
    from events_app.models import EventType

    kind, _ = EventType.objects.get_or_create(key="bench-visit", defaults={"name": "visit"})
    known = list(Customer.objects.filter(external_id__in=users).values_list("pk", flat=True))
    Event.objects.bulk_create(
        [
            Event(event_type=kind, customer_id=pk, occurred_at=_now())
            for pk in known
            for _ in range(3)
        ]
    )
    new = visitors[: args.calls]
    merging = visitors[args.calls :]
    modes = {
        "new": [(v, f"bench-new-{v}") for v in new],
        "merge": list(zip(merging, users, strict=True)),
        "repeat": [(v, f"bench-new-{v}") for v in new],
    }
    print(f"identify, {args.calls} calls each, on {Customer.objects.count():,} customers:")
    for mode, calls in modes.items():
        began = time.monotonic()
        for anonymous_id, external_id in calls:
            customer_identify(anonymous_id=anonymous_id, external_id=external_id)
        elapsed = time.monotonic() - began
        each_ms = elapsed * 1000 / len(calls)
        print(f"  {mode:7s} {len(calls) / elapsed:8.0f} calls/s  ({each_ms:.2f} ms each)")


def _now():  # type: ignore[no-untyped-def]
    from django.utils import timezone

    return timezone.now()


def _load_pair(events: int) -> tuple[str, str]:
    from django.db import connection

    from customers.models import Customer
    from customers.services import customer_delete
    from events_app.generation import Generator, ensure_event_types
    from events_app.management.commands.generate_events import CopyWriter
    from events_app.models import Event
    from events_app.partitions.ondemand import partitions_cover

    found = dict(Customer.objects.filter(external_id__in=PAIR).values_list("external_id", "pk"))
    if len(found) == 2 and Event.objects.filter(customer_id=found[PAIR[1]]).count() >= events:
        _runs_add(found[PAIR[0]], found[PAIR[1]])
        return found[PAIR[0]], found[PAIR[1]]
    for customer in Customer.objects.filter(external_id__in=PAIR):
        customer_delete(customer=customer)  # a load that stopped half-way, or fewer events
    began = time.monotonic()
    primary = Customer.objects.create(external_id=PAIR[0], attributes={"plan": "pro"})
    # The secondary is identified too (the merge is forced): its external id an alias.
    secondary = Customer.objects.create(
        external_id=PAIR[1], attributes={"plan": "free", "city": "Brno"}, tags=["vip"]
    )
    now_ms = time.time_ns() // 1_000_000
    # The months the events fall in get their partitions first (COPY creates none).
    partitions_cover(
        datetime.fromtimestamp(now_ms / 1000 - day * 86_400, tz=UTC) for day in range(0, 92, 7)
    )
    for index, customer in enumerate((primary, secondary)):
        generator = Generator(
            rng=random.Random(index),
            types=ensure_event_types(4),
            customer_ids=[customer.pk],
            start_ms=now_ms - 90 * 86_400_000,
            end_ms=now_ms,
            tag=f"pair{index}",
        )
        writer = CopyWriter()
        for chunk in generator.events(events, 20_000):
            writer.write(writer.prepare(chunk))
    _runs_add(primary.pk, secondary.pk)
    with connection.cursor() as cursor:
        for table in ("events_app_event", "events_app_propertyrecord", "automation_workflowrun"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    print(f"Loaded two customers with {events:,} events each in {time.monotonic() - began:.0f} s.")
    return primary.pk, secondary.pk


def _runs_add(primary: str, secondary: str) -> None:
    """A workflow run for one event in five of the pair (unless they have runs)."""
    from django.db import connection, transaction

    from automation.workflows.models import Workflow, WorkflowRun

    if WorkflowRun.objects.filter(customer_id__in=[primary, secondary]).exists():
        return
    Workflow.objects.get_or_create(pk="bench-workflow", defaults={"name": "bench", "active": False})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO automation_workflowrun (id, workflow_id, event_id, customer_id, "
            "workflow_version, actions, status, position, outcomes, error, explanation, "
            "segment_on, created_at) SELECT id, 'bench-workflow', id, customer_id, 1, '[]', "
            "'succeeded', 0, '[]', '', '{}', '', created_at FROM events_app_event "
            "WHERE customer_id IN (%s, %s) AND ('x' || right(id, 4))::bit(16)::int %% 5 = 0",
            [primary, secondary],
        )
        cursor.execute("ANALYZE automation_workflowrun")


@part("merge")
def merge(args: argparse.Namespace) -> None:
    from django.db import connection, transaction

    from customers.identity.models import CustomerMerge
    from customers.identity.services import customer_merge, merge_undo

    primary, secondary = _load_pair(args.events)
    timings: dict[str, list[float]] = {"dry run": [], "merge": [], "undo": []}
    floors: dict[str, list[float]] = {name: [] for name in FLOOR_STEPS}
    moved: dict[str, int] = {}
    statements: list[tuple[float, str]] = []
    for _ in range(args.runs):
        for name, seconds in _floor(primary, secondary).items():
            floors[name].append(seconds)
        # The dry run in a transaction of its own, the tables vacuumed after it: a merge
        # right after it in the same transaction would pay for its rolled-back versions.
        with transaction.atomic():
            began = time.monotonic()
            customer_merge(primary_id=primary, secondary_id=secondary, force=True, dry_run=True)
            timings["dry run"].append(time.monotonic() - began)
            transaction.set_rollback(True)
        _vacuum()
        with transaction.atomic():
            statements = []
            began = time.monotonic()
            with connection.execute_wrapper(_timing(statements)):
                record = customer_merge(primary_id=primary, secondary_id=secondary, force=True)
                # The deferred foreign-key checks run at commit: timed here, as a commit
                # would.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            timings["merge"].append(time.monotonic() - began)
            assert isinstance(record, CustomerMerge)
            moved = record.moved
            began = time.monotonic()
            merge_undo(merge_id=record.pk)
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            timings["undo"].append(time.monotonic() - began)
            transaction.set_rollback(True)
        _vacuum()
    print(f"merge of two customers with {args.events:,} events each (moved: {moved}):")
    for name, values in timings.items():
        median = statistics.median(values)
        goal = f"  goal <= {MERGE_GOAL_S:.1f} s: {'met' if median <= MERGE_GOAL_S else 'MISSED'}"
        print(
            f"  {name:8s} median {median:.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})"
            + (goal if name == "merge" else "")
        )
    print("  floor, the same runs: bare SQL on the same pair, rolled back (medians):")
    for name in FLOOR_STEPS:
        print(f"    {statistics.median(floors[name]):6.2f} s  {name}")
    merge_s = statistics.median(timings["merge"])
    for label, steps in (("the events' floor", FLOOR_EVENTS), ("events + runs", FLOOR_STEPS)):
        floor = statistics.median(
            sum(floors[name][run] for name in steps) for run in range(args.runs)
        )
        print(
            f"  merge {merge_s:.2f} s against {label} {floor:.2f} s (UPDATEs + their FK "
            f"checks): {merge_s / floor:.2f}x, {merge_s - floor:+.2f} s"
        )
    print("  the last merge's statements over 0.05 s (SET CONSTRAINTS: the deferred FK checks):")
    for seconds, sql in sorted(statements, reverse=True):
        if seconds >= 0.05:
            print(f"    {seconds:6.2f} s  {sql}")
    rest = sum(seconds for seconds, _ in statements if seconds < 0.05)
    print(f"    {rest:6.2f} s  the other {sum(1 for t, _ in statements if t < 0.05)} statements")


# The floor of the current design: what moving the secondary's rows costs in bare SQL,
# the events (which any merge must move) apart from the workflow runs.
FLOOR_EVENTS = ("events UPDATE", "events FK checks")
FLOOR_STEPS = (*FLOOR_EVENTS, "runs UPDATE", "runs FK checks")


def _vacuum() -> None:
    """The rolled-back versions are dead rows in every index of the moved tables: cleaned
    up as autovacuum would, so each measurement starts from tables in the same shape."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM events_app_event")
        cursor.execute("VACUUM automation_workflowrun")


def _floor(primary: str, secondary: str) -> dict[str, float]:
    """One bare `UPDATE … SET customer_id` per table and the deferred foreign-key checks
    it queues (forced, as a commit would run them), inside a transaction rolled back."""
    from django.db import connection, transaction

    seconds: dict[str, float] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for table, label in (("events_app_event", "events"), ("automation_workflowrun", "runs")):
            began = time.monotonic()
            cursor.execute(
                f"UPDATE {table} SET customer_id = %s WHERE customer_id = %s",
                [primary, secondary],
            )
            seconds[f"{label} UPDATE"] = time.monotonic() - began
            began = time.monotonic()
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            seconds[f"{label} FK checks"] = time.monotonic() - began
        transaction.set_rollback(True)
    _vacuum()
    return seconds


def _timing(statements: list[tuple[float, str]]) -> Callable[..., object]:
    """A connection.execute_wrapper that records (seconds, the start of the SQL)."""

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        began = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            text = " ".join(str(sql).split())
            statements.append((time.monotonic() - began, text[:110]))

    return wrapper


@part("export")
def export(args: argparse.Namespace) -> None:
    """A privacy export of the merge pair's primary (--events events, a run for one in
    five), written and then downloaded, in a fresh child process (so its peak memory is
    the export's own), inside a transaction rolled back afterwards."""
    _load_pair(args.events)
    for _ in range(args.runs):
        command = [sys.executable, str(Path(__file__).resolve()), "--export-child"]
        subprocess.run(command, check=True)


def _export_child() -> None:
    """The export part's measurement: seconds and the growth of the process's peak RSS,
    for writing the document and for reading it back as the download streams it
    (tracemalloc would slow the export tenfold)."""
    import resource

    import django

    django.setup()
    from django.db import transaction

    from customers.privacy.models import PrivacyExport, PrivacyRequest
    from customers.privacy.selectors import privacy_export_chunks
    from customers.privacy.services import REQUEST_HANDLERS, request_digest

    def rss_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with transaction.atomic():
        request = PrivacyRequest.objects.create(
            type="export",
            identifier_kind="external_id",
            identifier_digest=request_digest("external_id", PAIR[0]),
            identifier_value=PAIR[0],
        )
        rss_before = rss_mib()
        began = time.monotonic()
        counts = REQUEST_HANDLERS["export"].run(request, _now())
        write_s = time.monotonic() - began
        rss_write = rss_mib()
        began = time.monotonic()
        size = 0
        for chunk in privacy_export_chunks(export=PrivacyExport.objects.get(request=request)):
            size += len(chunk)
        read_s = time.monotonic() - began
        transaction.set_rollback(True)
    print(
        f"export of {counts.get('events', 0):,} events, {counts.get('workflow_runs', 0):,} runs"
        f" ({size / 2**20:.0f} MiB): write {write_s:.1f} s,"
        f" peak RSS +{rss_write - rss_before:.0f} MiB; download {read_s:.1f} s,"
        f" peak RSS +{rss_mib() - rss_write:.0f} MiB more"
    )


@part("delete")
def delete(args: argparse.Namespace) -> None:
    """A privacy delete of one customer with --delete-events events among --delete-among:
    bench/identity_delete.py in its own database and child processes (it measures each
    run's memory from a fresh process)."""
    script = Path(__file__).resolve().parent / "identity_delete.py"
    background = max(args.delete_among - args.delete_events, 0)
    command = [sys.executable, str(script), "--events", str(args.delete_events)]
    command += ["--background", str(background), "--runs", str(args.runs)]
    subprocess.run(command, check=True)


# Loading --delete-among events takes long: the delete part runs only when named.
DEFAULT_PARTS = ("identify", "merge", "export")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", default=",".join(DEFAULT_PARTS), help=f"parts: {', '.join(PARTS)}"
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delete-events", type=int, default=1_000_000)
    parser.add_argument("--delete-among", type=int, default=10_000_000)
    parser.add_argument("--export-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        _export_child()
        return
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise SystemExit(f"Unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}.")
    if set(names) - {"delete"}:
        setup(args.customers)
    for name in names:
        PARTS[name](args)


if __name__ == "__main__":
    main()
