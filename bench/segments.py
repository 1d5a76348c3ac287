"""Segments benchmark: a full build, the cost on batch ingest, entry lag, time-based exits.

    [DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench_segments] \
        .venv/bin/python bench/segments.py [--customers 1000000] [--events 10000000]
        [--port 8131] [--redis-db 11] [--runs 3] [--batches 5] [--lag-seconds 10]
        [--lag-rate 200] [--exit-customers 300]

1. Data: --customers customers and --events events (the demo types, spread over six
   months) generated with COPY (`manage.py generate_events`), unless the database holds
   them already (then they are reused: only the segments and workflows are cleared).
2. Build: a three-leaf behavioural segment (purchases in 90 days, their amount's sum,
   a login in 30 days) built from scratch by `segment_build`, as a worker runs it; a
   progress line every few seconds. Goal <= 30 s at 1 M customers / 10 M events.
3. Ingest: batch ingestion over HTTP (gunicorn, 1000-event batches of the four demo
   types, existing customers) without segments and with 20 segments reading those types,
   alternating, in the same run; with / without, goal >= 80 %. As in bench/ingest.py the
   wake-ups are published to Redis and not run: the figure is what ingestion pays. The
   refresh the flagged events then need is measured after: one worker process draining
   them with the 20 segments (events/s).
4. Entry lag: one real Celery worker (with beat) on Redis; customers send their first
   `bench_ping` event (POST /events/batch, --lag-rate events/s) and enter a segment; the
   lag from the POST answering to the membership existing, p50/p99 (goal p99 < 2 s).
   When workflows take `trigger_segments`, a workflow on that entry is active and the
   lag to its WorkflowRun is printed too.
5. Time-based exits: --exit-customers customers send a `bench_tick` and enter a segment
   "a tick within the last 20 s"; nothing else is sent, and the lag from each one's
   window edge to their exit (the `segments.sweep` job every 5 s) is printed, p50/p99
   (goal p99 < 60 s).

The database is migrated; its segments, workflows and pending flags are CLEARED: use a
scratch database. Every wait is bounded. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import scratch_database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

API = "/rest-api/enterprise-interface/v1.0"
TYPES = ("purchase", "login", "api_call", "signup")
PING, TICK = "bench_ping", "bench_tick"
EXIT_WINDOW = timedelta(seconds=20)
MAX_WAIT = 120.0

BUILD_CONDITION = {
    "all": [
        {"count": {"event_type": "purchase", "within": "P90D"}, "op": "gte", "value": 2},
        {
            "aggregate": {
                "event_type": "purchase",
                "property": "amount",
                "fn": "sum",
                "within": "P90D",
            },
            "op": "gte",
            "value": 300,
        },
        {"last": "login", "op": "within", "value": "P30D"},
    ]
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--redis-db", type=int, default=11, help="the broker (emptied)")
    parser.add_argument("--runs", type=int, default=3, help="ingest runs each way (median)")
    parser.add_argument("--batches", type=int, default=5, help="1000-event batches per run")
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--lag-rate", type=int, default=200, help="ping events/s")
    parser.add_argument("--exit-customers", type=int, default=300)
    parser.add_argument(
        "--build-seconds",
        type=float,
        default=600.0,
        help="stop the build after this long (the rate so far is extrapolated)",
    )
    parser.add_argument(
        "--compare-customers",
        type=int,
        default=20_000,
        help="after the build, build this many customers by the general path and in SQL",
    )
    parser.add_argument("--skip", default="", help="comma-separated phases to skip: build,…")
    args = parser.parse_args()
    args.worker_class, args.threads = "sync", 1  # what bench/ingest.start_gunicorn reads
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{args.redis_db}"
    return args


# ---------------------------------------------------------------- data


def prepare(args: argparse.Namespace) -> None:
    """Migrate; generate the customers and events unless present; clear segments."""
    scratch_database("herald_bench_segments")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.db import connection

    from automation.segments.selectors import loaded_segments_forget

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customers_customer")
        customers = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM events_app_event")
        events = cursor.fetchone()[0]
    if customers < args.customers or events < args.events * 0.99:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE automation_segmentmembership, automation_segmentcheck, "
                "automation_segment, events_app_propertyrecord, events_app_event, "
                "events_app_eventref, customers_customer CASCADE"
            )
        connection.close()
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "generate_events",
                "--events",
                str(args.events),
                "--customers",
                str(args.customers),
                "--seed",
                "13",
                "--chunk",
                "50000",
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"generated with COPY in {time.perf_counter() - started:,.0f} s")
        customers, events = args.customers, args.events
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_segmentmembership, automation_segmentcheck, "
            "automation_segment, automation_workflowrun, automation_workflow CASCADE"
        )
        cursor.execute(
            "UPDATE events_app_event SET automation_pending = false WHERE automation_pending"
        )
    from events_app.demo import demo_event_type_ensure

    demo_event_type_ensure(PING, "Bench ping", [])
    demo_event_type_ensure(TICK, "Bench tick", [])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    loaded_segments_forget()
    print(f"{customers:,} customers, {events:,} events (reused when present)")


def api_auth() -> str:
    import base64

    from events_app.api_clients import api_client_create

    client, secret = api_client_create(name=f"bench-{uuid.uuid4().hex[:8]}")
    return "Basic " + base64.b64encode(f"{client.name}:{secret}".encode()).decode()


def make_segment(key: str, condition: dict[str, Any]) -> Any:
    from automation.segments.services import SegmentInput, segment_create

    return segment_create(data=SegmentInput(key=key, name=key, condition=condition))


# ---------------------------------------------------------------- 2. build


def phase_build(args: argparse.Namespace) -> None:
    """Build the three-leaf segment from scratch, printing progress; the time taken. A
    build still running after --build-seconds is stopped as a changed condition stops
    one (its version bumped) and its time extrapolated from its rate (general path)."""
    import automation.segments.services as services
    from automation.segments import sql_build
    from automation.segments.models import Segment
    from automation.segments.selectors import loaded_segments_forget
    from customers.models import Customer

    segment = make_segment("bench_build", BUILD_CONDITION)
    loaded_segments_forget()
    total = Customer.objects.count()
    done = [0]
    real = services.memberships_refresh

    def counted(**kwargs: Any) -> Any:  # the general path's batches, for the progress line
        result = real(**kwargs)
        done[0] += len(kwargs["customer_ids"])
        return result

    services.memberships_refresh = counted  # type: ignore[assignment]
    real_sql = services.segment_build_sql
    step, instants = ["waiting for the segment's lock"], []
    real_compile = sql_build.compile_segment  # the name the build calls

    def compiled(segment: Any, now: Any, **kwargs: Any) -> Any:  # the build's moment
        instants.append(now)
        return real_compile(segment, now, **kwargs)

    def with_progress(**kwargs: Any) -> Any:  # the SQL build's steps, for the progress line
        return real_sql(**kwargs, progress=lambda done: step.__setitem__(0, done))

    services.segment_build_sql = with_progress  # type: ignore[assignment]
    sql_build.compile_segment = compiled  # type: ignore[assignment]
    outcome: dict[str, Any] = {}

    def build() -> None:
        from django.db import connection

        try:
            outcome["made"] = services.segment_build(segment_id=segment.pk, version=1)
        finally:
            connection.close()

    started = time.perf_counter()
    thread = threading.Thread(target=build)
    thread.start()
    stopped = False
    while thread.is_alive():
        thread.join(timeout=5)
        elapsed = time.perf_counter() - started
        if elapsed > args.build_seconds and not stopped:
            Segment.objects.filter(pk=segment.pk).update(version=2)
            stopped = True
        if done[0]:
            print(
                f"   build: {done[0]:>9,} / {total:,} customers  {elapsed:6.1f} s  "
                f"{done[0] / max(elapsed, 1e-9):>8,.0f} customers/s",
                flush=True,
            )
        else:
            print(f"   build: {elapsed:6.1f} s  step {step[0]}", flush=True)
    elapsed = time.perf_counter() - started
    services.memberships_refresh = real  # type: ignore[assignment]
    services.segment_build_sql = real_sql  # type: ignore[assignment]
    sql_build.compile_segment = real_compile  # type: ignore[assignment]
    segment.refresh_from_db()
    members = segment.memberships.filter(exited_at__isnull=True).count()
    if not done[0] and not stopped:
        done[0] = total  # the build in the database decides everyone at once
    rate = done[0] / elapsed
    took = (
        f"stopped after {elapsed:.1f} s at {done[0]:,} of {total:,} customers: "
        f"{total / rate:,.0f} s for all at that rate"
        if stopped
        else f"{elapsed:.1f} s for {total:,} customers"
    )
    checks = segment_checks(segment.pk)
    print(
        f"2. build of a three-leaf behavioural segment from scratch: {took} "
        f"({rate:,.0f} customers/s), {members:,} members, {checks:,} next checks, "
        f"status {segment.status} (goal <= 30 s at 1 M customers / 10 M events)"
    )
    started = time.perf_counter()
    from automation.segments.selectors import segment_list

    counts = list(segment_list().values_list("key", "member_count"))
    print(f"   the segment list's member counts ({counts}): {time.perf_counter() - started:.3f} s")
    if args.compare_customers and instants:
        compare_paths(args.compare_customers, segment, instants[-1], elapsed)


def segment_checks(segment_id: str) -> int:
    from automation.segments.models import SegmentCheck

    return SegmentCheck.objects.filter(segment_id=segment_id).count()


def compare_paths(n: int, built: Any, now: Any, elapsed: float) -> None:
    """The first `n` customers decided again by the general path (facts per batch of
    ids, decided in Python, written through the ORM) on a twin segment, its clock set
    to the SQL build's moment: the memberships and next checks must be the same."""
    import time_machine

    from automation.segments.membership import memberships_refresh
    from automation.segments.models import SegmentCheck, SegmentMembership
    from automation.segments.selectors import loaded_segments, loaded_segments_forget
    from customers.models import Customer

    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:n])
    python_segment = make_segment("bench_compare_python", BUILD_CONDITION)
    loaded_segments_forget()
    loaded = loaded_segments().by_id
    size = settings_batch_size()
    started = time.perf_counter()
    with time_machine.travel(now, tick=False):
        for start in range(0, len(ids), size):
            memberships_refresh(
                segments=[loaded[python_segment.pk]],
                customer_ids=ids[start : start + size],
                quiet=True,
            )
    general = time.perf_counter() - started

    def state(segment_id: str) -> tuple[set[str], dict[str, Any]]:
        members = set(
            SegmentMembership.objects.filter(
                segment_id=segment_id, customer_id__in=ids, exited_at__isnull=True
            ).values_list("customer_id", flat=True)
        )
        checks = dict(
            SegmentCheck.objects.filter(segment_id=segment_id, customer_id__in=ids).values_list(
                "customer_id", "next_check_at"
            )
        )
        return members, checks

    (sql_members, sql_checks), (py_members, py_checks) = state(built.pk), state(python_segment.pk)
    total = Customer.objects.count()
    print(
        f"   same run, first {len(ids):,} customers by the general path at the build's "
        f"moment: {general:.1f} s ({len(ids) / general:,.0f}/s; the whole build in SQL: "
        f"{total / elapsed:,.0f}/s, {total / elapsed / (len(ids) / general):,.0f}x); "
        "same members: "
        f"{sql_members == py_members} ({len(sql_members):,}); same next checks: "
        f"{sql_checks == py_checks} ({len(sql_checks):,})"
    )
    from automation.segments.services import segment_delete

    segment_delete(segment=python_segment)


def settings_batch_size() -> int:
    from django.conf import settings

    return int(settings.HERALD_SEGMENT_BATCH_SIZE)


def time_now() -> Any:
    from django.utils import timezone

    return timezone.now()


# ---------------------------------------------------------------- 3. ingest


def twenty_conditions() -> list[dict[str, Any]]:
    """Twenty segments over the four ingested types: every leaf kind, some combined."""
    out: list[dict[str, Any]] = []
    for n in range(20):
        kind = TYPES[n % 4]
        days = f"P{7 * (1 + n % 5)}D"
        if n % 5 == 0:
            leaf = {"count": {"event_type": kind, "within": days}, "op": "gte", "value": 1 + n % 3}
        elif n % 5 == 1:
            leaf = {"last": kind, "op": "within" if n % 2 else "more_than", "value": days}
        elif n % 5 == 2:
            leaf = {
                "aggregate": {
                    "event_type": "purchase",
                    "property": "amount",
                    "fn": ("sum", "avg", "max", "min")[n % 4],
                    "within": days,
                },
                "op": "gte",
                "value": 50 + n * 10,
            }
        elif n % 5 == 3:
            leaf = {
                "all": [
                    {"count": {"event_type": kind, "within": days}, "op": "gte", "value": 1},
                    {"customer": "attributes.country", "op": "in", "value": ["CZ", "DE"]},
                ]
            }
        else:
            leaf = {"not": {"count": {"event_type": kind, "within": days}, "op": "gte", "value": 2}}
        out.append(leaf)
    return out


def sample_customers(n: int) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT external_id FROM customers_customer ORDER BY id DESC LIMIT %s", [n * 20]
        )
        ids = [row[0] for row in cursor.fetchall()]
    random.Random(5).shuffle(ids)
    return ids[:n]


def event_item(kind: str, customer: str, ref: str, n: int, occurred: str | None = None) -> dict:
    records: list[dict[str, Any]] = []
    if kind == "purchase":
        records = [
            {"property_id": "amount", "property_value": 5 + n % 400},
            {"property_id": "currency", "property_value": "EUR"},
        ]
    elif kind == "signup":
        records = [{"property_id": "plan", "property_value": "pro"}]
    event: dict[str, Any] = {"event_type": kind, "customer_external_id": customer}
    event["external_id"] = ref
    if occurred:
        event["occurred_at"] = occurred
    return {"event": event, "property_records": records}


def batches(prefix: str, count: int, customers: list[str]) -> list[bytes]:
    return [
        json.dumps(
            {
                "events": [
                    event_item(
                        TYPES[n % 4],
                        customers[(b * 1000 + n) % len(customers)],
                        f"{prefix}-{b}-{n}",
                        n,
                    )
                    for n in range(1000)
                ]
            },
            separators=(",", ":"),
        ).encode()
        for b in range(count)
    ]


def phase_ingest(args: argparse.Namespace, auth: str) -> None:
    from ingest import send_batches

    from automation.due import due_events_process
    from automation.segments.models import Segment
    from automation.segments.services import segment_delete

    customers = sample_customers(20_000)
    tag = uuid.uuid4().hex[:6]
    send_batches(args.port, auth, batches(f"warm-{tag}", 2 * args.workers, customers), 2)
    rates: dict[str, list[float]] = {"without": [], "with": []}
    keys = [f"bench_ingest_{n:02d}" for n in range(20)]
    for run in range(args.runs):
        for mode in ("without", "with"):
            if mode == "with":
                for key, condition in zip(keys, twenty_conditions(), strict=True):
                    make_segment(key, condition)
            bodies = batches(f"{tag}-{mode}-{run}", args.batches, customers)
            elapsed, counts = send_batches(args.port, auth, bodies, 2)
            assert counts["valid"] == 1000 * args.batches, counts
            rates[mode].append(counts["valid"] / elapsed)
            if mode == "with" and run < args.runs - 1:
                for segment in Segment.objects.filter(key__in=keys):
                    segment_delete(segment=segment)
    without, with_ = (statistics.median(rates[m]) for m in ("without", "with"))
    print(
        f"3. batch ingest, {args.batches} x 1000 events of the four types, 2 senders, "
        f"gunicorn {args.workers} workers: without segments {without:,.0f} events/s, with 20 "
        f"segments {with_:,.0f} events/s: with / without {with_ / without:.0%} (goal >= 80 %)"
    )
    print(
        "   runs without: "
        + ", ".join(f"{r:,.0f}" for r in rates["without"])
        + "; with: "
        + ", ".join(f"{r:,.0f}" for r in rates["with"])
    )
    # The refresh those flagged events need, by one worker process (this one).
    started, claimed = time.perf_counter(), 0
    while time.perf_counter() - started < MAX_WAIT:
        done = due_events_process(limit=500).claimed
        if not done:
            break
        claimed += done
    elapsed = time.perf_counter() - started
    print(
        f"   refresh of the flagged events with the 20 segments, one worker process: "
        f"{claimed:,} events in {elapsed:.1f} s = {claimed / max(elapsed, 1e-9):,.0f} events/s"
    )
    for segment in Segment.objects.filter(key__in=keys):
        segment_delete(segment=segment)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_app_event SET automation_pending = false WHERE automation_pending"
        )


# ---------------------------------------------------------------- 4, 5: a real worker


def start_worker(args: argparse.Namespace, folder: str) -> subprocess.Popen[bytes]:
    from ingest import purge_queue

    purge_queue()  # the builds published so far are not this phase's work
    main = (
        "import sys\nfrom project.celery import all_queues, app\n"
        "app.worker_main(['worker', '-B', '-s', sys.argv[1], '-P', 'solo', "
        "'-Q', ','.join(all_queues()), "
        "'--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'warning'])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", main, os.path.join(folder, "beat-schedule")],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def worker_segments() -> None:
    """The lag and exit segments, and the workflow on entering the first (when workflows
    take segment triggers). Nobody has these events yet, so a build would find no member:
    they are marked ready instead of evaluating every customer for nothing."""
    from automation.segments.models import Segment

    make_segment("bench_lag", {"count": {"event_type": PING}, "op": "gte", "value": 1})
    within = f"PT{int(EXIT_WINDOW.total_seconds())}S"
    make_segment(
        "bench_exit", {"count": {"event_type": TICK, "within": within}, "op": "gte", "value": 1}
    )
    Segment.objects.filter(key__in=["bench_lag", "bench_exit"]).update(
        status=Segment.Status.READY, built_at=datetime.now(UTC)
    )
    lag_workflow("bench_lag")


def warm_up(args: argparse.Namespace, auth: str, segment: Any, worker: Any) -> None:
    """One ping, waited for (bounded): the worker is up and has loaded the segments."""
    from ingest import post

    from automation.segments.models import SegmentMembership

    customer = f"bench-warm-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"events": [event_item(PING, customer, customer, 0)]}).encode()
    status, payload = post(args.port, auth, f"{API}/events/batch", body)
    assert status == 200, payload[:300]
    deadline = time.perf_counter() + MAX_WAIT
    while not SegmentMembership.objects.filter(
        segment=segment, customer__external_id=customer
    ).exists():
        if worker.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit("the Celery worker did not start")
        time.sleep(0.2)


class Watcher:
    """Polls a query every 10 ms from its own connection; records when each key appears."""

    def __init__(self, query: Any) -> None:
        self.query = query
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from django.db import connection

        while not self.stop.is_set():
            keys = list(self.query())
            at = time.time()
            for key in keys:
                self.seen.setdefault(key, at)
            time.sleep(0.01)
        connection.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{len(values)} values"
    q = statistics.quantiles(values, n=100)
    return (
        f"p50 {q[49] * 1000:,.0f} ms, p99 {q[98] * 1000:,.0f} ms, max {max(values) * 1000:,.0f} ms"
    )


def lag_workflow(segment_key: str) -> Any:
    """A workflow on entering the segment, when workflows take segment triggers."""
    import dataclasses

    from automation.workflows.services import WorkflowInput, workflow_create

    if "trigger_segments" not in {f.name for f in dataclasses.fields(WorkflowInput)}:
        return None
    return workflow_create(
        data=WorkflowInput(  # type: ignore[call-arg]
            name="bench-lag",
            trigger_segments=[{"segment": segment_key, "on": "entered"}],
            actions=[{"type": "add_tags", "tags": ["bench-lag"]}],
            conditions={},
            active=True,
        )
    )


def phase_lag(args: argparse.Namespace, auth: str, worker: subprocess.Popen[bytes]) -> None:
    from ingest import post

    from automation.segments.models import Segment, SegmentMembership
    from automation.workflows.models import Workflow, WorkflowRun
    from customers.models import Customer

    segment = Segment.objects.get(key="bench_lag")
    workflow = Workflow.objects.filter(name="bench-lag").first()
    warm_up(args, auth, segment, worker)
    customers = sample_customers(int(args.lag_seconds * args.lag_rate) + 100)
    by_id = dict(
        Customer.objects.filter(external_id__in=customers).values_list("pk", "external_id")
    )
    members = Watcher(
        lambda: [
            by_id.get(c, c)
            for c in SegmentMembership.objects.filter(segment=segment).values_list(
                "customer_id", flat=True
            )
        ]
    )
    runs = None
    if workflow is not None:
        runs = Watcher(
            lambda: [
                by_id.get(c, c)
                for c in WorkflowRun.objects.filter(workflow=workflow).values_list(
                    "customer_id", flat=True
                )
            ]
        )
    per_post = 20
    returned: dict[str, float] = {}
    started = time.perf_counter()
    sent = 0
    tag = uuid.uuid4().hex[:6]
    while time.perf_counter() - started < args.lag_seconds:
        due = started + sent / args.lag_rate
        time.sleep(max(0.0, due - time.perf_counter()))
        chunk = customers[sent : sent + per_post]
        body = json.dumps(
            {"events": [event_item(PING, c, f"ping-{tag}-{c}", 0) for c in chunk]}
        ).encode()
        status, payload = post(args.port, auth, f"{API}/events/batch", body)
        assert status == 200, payload[:300]
        at = time.time()
        returned.update(dict.fromkeys(chunk, at))
        sent += len(chunk)
    deadline = time.perf_counter() + MAX_WAIT
    watchers = [members] + ([runs] if runs else [])
    while time.perf_counter() < deadline and any(
        len(w.seen.keys() & returned.keys()) < len(returned) for w in watchers
    ):
        time.sleep(0.1)
    for watcher in watchers:
        watcher.close()
    lags = [members.seen[c] - at for c, at in returned.items() if c in members.seen]
    print(
        f"4. entry lag, POST /events/batch answered -> membership exists, one Celery worker, "
        f"{len(returned):,} customers at {len(returned) / args.lag_seconds:,.0f}/s: "
        f"{quantiles(lags)} ({len(lags)}/{len(returned)} seen; goal p99 < 2 s)"
    )
    if runs is None:
        print("   -> WorkflowRun: not measured (workflows take no trigger_segments here)")
    else:
        run_lags = [runs.seen[c] - at for c, at in returned.items() if c in runs.seen]
        print(
            f"   -> WorkflowRun exists: {quantiles(run_lags)} "
            f"({len(run_lags)}/{len(returned)} seen; goal p99 < 2 s)"
        )


def phase_exits(args: argparse.Namespace, auth: str, worker: subprocess.Popen[bytes]) -> None:
    from ingest import post

    from automation.segments.models import Segment, SegmentMembership
    from customers.models import Customer

    within = f"PT{int(EXIT_WINDOW.total_seconds())}S"
    segment = Segment.objects.get(key="bench_exit")
    customers = sample_customers(args.exit_customers + 50)[-args.exit_customers :]
    by_id = dict(
        Customer.objects.filter(external_id__in=customers).values_list("pk", "external_id")
    )
    edges: dict[str, float] = {}
    tag = uuid.uuid4().hex[:6]
    for start in range(0, len(customers), 50):
        chunk = customers[start : start + 50]
        occurred = datetime.now(UTC)
        body = json.dumps(
            {
                "events": [
                    event_item(TICK, c, f"tick-{tag}-{c}", 0, occurred.isoformat()) for c in chunk
                ]
            }
        ).encode()
        status, payload = post(args.port, auth, f"{API}/events/batch", body)
        assert status == 200, payload[:300]
        edges.update(dict.fromkeys(chunk, (occurred + EXIT_WINDOW).timestamp()))
    exits = Watcher(
        lambda: [
            by_id.get(c, c)
            for c in SegmentMembership.objects.filter(
                segment=segment, exited_at__isnull=False
            ).values_list("customer_id", flat=True)
        ]
    )
    deadline = time.perf_counter() + EXIT_WINDOW.total_seconds() + MAX_WAIT
    while len(exits.seen) < len(edges) and time.perf_counter() < deadline:
        time.sleep(0.2)
    exits.close()
    lags = [exits.seen[c] - edge for c, edge in edges.items() if c in exits.seen]
    print(
        f"5. time-based exits, {len(edges):,} customers leaving 'a tick within {within}': "
        f"after the window's edge {quantiles(lags)} ({len(lags)}/{len(edges)} exited; "
        "goal p99 < 60 s; the sweep runs every 5 s)"
    )


# ---------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    began = time.perf_counter()
    print(f"Segments benchmark, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    prepare(args)
    from ingest import purge_queue, start_gunicorn

    from automation.segments.models import Segment
    from automation.segments.services import segment_delete

    if "build" not in skip:
        phase_build(args)
        segment_delete(segment=Segment.objects.get(key="bench_build"))
    if {"ingest", "lag", "exits"} <= skip:
        print(f"whole run {time.perf_counter() - began:,.0f} s")
        return
    auth = api_auth()
    from django.db import connection

    connection.close()
    server = start_gunicorn(args, args.port)
    try:
        if "ingest" not in skip:
            phase_ingest(args, auth)
        worker_segments()
        with tempfile.TemporaryDirectory() as folder:
            worker = start_worker(args, folder)
            try:
                if "lag" not in skip:
                    phase_lag(args, auth, worker)
                if "exits" not in skip:
                    phase_exits(args, auth, worker)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=20)
        purge_queue()
    print(
        f"whole run {time.perf_counter() - began:,.0f} s; load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
