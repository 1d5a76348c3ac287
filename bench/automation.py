"""Workflow automation benchmark: evaluation throughput of one worker, and run lag.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench_automation \
        .venv/bin/python bench/automation.py [--events 20000] [--rate 1000] [--seconds 10]

Prints:
  1. events evaluated per second by ONE worker process (this process, calling the
     claimer `due_events_process` on 500-event batches) with 100
     active workflows, 10 of them triggering on the benchmark's event type with
     mixed leaves (property, event data, customer attribute and tags, regex,
     relative time, and one frequency condition), runs and their actions included;
  2. the lag from `POST /events/batch` returning to the WorkflowRun existing
     (p50/p99), with ONE real Celery worker on Redis (db --redis-db) and the API
     called in this process at --rate events/s (100-event batches).

With --policy, instead: the added cost of a delivery policy. The same events are
evaluated and their runs' actions run in alternating rounds (--rounds each) without
and with every workflow under a policy that checks on every action (a cap on
add_tags that is never reached, and quiet hours that are not now), in one process
on one database, after a warm-up round of each; prints the best round of each and the
ratio (goal: >= 90 %), and the median of each round's ratio. Then, --rounds times, the
actions alone in interleaved blocks of --block runs, with and without the policy in
turn: the median of each adjacent pair's ratio (the steadiest figure on a shared machine).

The database named by DATABASE_URL is migrated and its event, customer and
workflow tables are TRUNCATED: never point it at data you want to keep. Every
load loop is bounded in count and time. Figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import scratch_database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

API = "/rest-api/enterprise-interface/v1.0"
TYPE_KEY = "purchase"
OTHER_TYPES = 9
CUSTOMERS = 2000
MAX_SECONDS_PER_PHASE = 180
# One --policy round's figures (_policy_round).
Round = tuple[float, float, int, float, float, float, float]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events for phase 1")
    parser.add_argument("--batch", type=int, default=500, help="events per evaluation task")
    parser.add_argument("--rate", type=int, default=1000, help="ingest events/s in phase 2")
    parser.add_argument("--seconds", type=int, default=10, help="duration of phase 2")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--pool", default="solo", help="worker pool: solo, threads, prefork")
    parser.add_argument("--concurrency", type=int, default=1, help="worker pool size")
    parser.add_argument(
        "--policy", action="store_true", help="compare rounds without / with a delivery policy"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode with --policy")
    parser.add_argument(
        "--block", type=int, default=25, help="runs per interleaved block with --policy"
    )
    return parser.parse_args()


def leaf_mix(i: int) -> dict:
    """Ten selective trees of mixed leaves (about one run per ten events, as real
    rules go); number 3 carries the frequency condition."""
    trees = [
        {
            "all": [
                {"property": "amount", "op": "gte", "value": 118},
                {"event": "data.channel", "op": "eq", "value": "web"},
            ]
        },
        {
            "all": [
                {"customer": "attributes.country", "op": "in", "value": ["CZ", "SK"]},
                {"customer": "tags", "op": "contains", "value": "vip"},
            ]
        },
        {
            "all": [
                {"property": "sku", "op": "matches", "value": "^SKU-99[0-9]$"},
                {"event": "occurred_at", "op": "within_last", "value": "P1D"},
            ]
        },
        {
            "all": [
                {"count": {"event_type": TYPE_KEY, "within": "P7D"}, "op": "gte", "value": 3},
                {"property": "amount", "op": "between", "value": [100, 101]},
            ]
        },
        {
            "all": [
                {"property": "paid", "op": "eq", "value": False},
                {"property": "amount", "op": "gt", "value": 110},
            ]
        },
        {"property": "amount", "op": "lt", "value": 1},
        {
            "all": [
                {"event": "data.channel", "op": "starts_with", "value": "api"},
                {"property": "amount", "op": "eq", "value": 7},
            ]
        },
        {"customer": "email", "op": "ends_with", "value": "@example.org"},
        {
            "all": [
                {"property": "amount", "op": "gt", "value": 115},
                {"customer": "attributes.age", "op": "gte", "value": 55},
            ]
        },
        {
            "not": {
                "any": [
                    {"property": "sku", "op": "not_exists"},
                    {"property": "amount", "op": "ne", "value": 60},
                ]
            }
        },
    ]
    return trees[i % len(trees)]


def setup(args: argparse.Namespace) -> str:
    scratch_database("herald_bench_automation")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.db import connection

    from automation.workflows.services import WorkflowInput, workflow_create
    from customers.models import Customer
    from events_app.api_clients import api_client_create
    from events_app.models import EventType, PropertyDefinition

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_workflowrun, automation_workflow_trigger_event_types, "
            "automation_workflow, automation_deliveryattempt, automation_delivery, "
            "events_app_propertyrecord, events_app_event, customers_customer, "
            "events_app_propertydefinition, events_app_eventtype, events_app_apiclient CASCADE"
        )
    purchase = EventType.objects.create(key=TYPE_KEY, name="Purchase")
    for prop, kind in (("amount", "number"), ("paid", "boolean"), ("sku", "string")):
        PropertyDefinition.objects.create(event_type=purchase, property_id=prop, value_type=kind)
    others = [
        EventType.objects.create(key=f"other_{i}", name=f"Other {i}") for i in range(OTHER_TYPES)
    ]
    Customer.objects.bulk_create(
        [
            Customer(
                external_id=f"c{i}",
                email=f"c{i}@example.com",
                attributes={"country": ["CZ", "SK", "DE", "US"][i % 4], "age": 20 + i % 40},
                tags=["vip"] if i % 10 == 0 else [],
            )
            for i in range(CUSTOMERS)
        ]
    )
    for i in range(100):
        on_purchase = i < 10
        workflow_create(
            data=WorkflowInput(
                name=f"wf{i}",
                trigger_event_types=[TYPE_KEY if on_purchase else others[i % OTHER_TYPES].key],
                conditions=leaf_mix(i) if on_purchase else {"property": "x", "op": "exists"},
                actions=[{"type": "add_tags", "tags": [f"wf{i}"]}] if i % 3 == 0 else [],
                active=False,  # phase 1 ingests first, then activates
            )
        )
    _, secret = api_client_create(name="bench")
    return secret


def items(n: int, offset: int) -> list[dict]:
    return [
        {
            "event": {
                "event_type": TYPE_KEY,
                "customer_external_id": f"c{(offset + i) % CUSTOMERS}",
                "data": {"channel": ["web", "app", "api"][i % 3]},
            },
            "property_records": [
                {"property_id": "amount", "property_value": (offset + i) % 120},
                {"property_id": "paid", "property_value": i % 4 != 0},
                {"property_id": "sku", "property_value": f"SKU-{i % 1000}"},
            ],
        }
        for i in range(n)
    ]


def store(batch: list[dict]) -> list[str]:
    import msgspec

    from events_app.ingestion import events_prepare, events_store
    from events_app.schemas import EventCreateIn

    prepared, invalid = events_prepare(items=[msgspec.convert(b, EventCreateIn) for b in batch])
    assert not invalid, invalid[:1]
    return [p.id for p in events_store(prepared=prepared).stored]


def phase_throughput(args: argparse.Namespace) -> None:
    from automation.due import due_events_process
    from automation.workflows.models import Workflow, WorkflowRun
    from automation.workflows.runner import workflow_run_advance
    from automation.workflows.selectors import active_workflows_forget
    from events_app.models import Event

    ids: list[str] = []
    for offset in range(0, args.events, 1000):
        ids += store(items(min(1000, args.events - offset), offset))
    from django.db import connection

    with connection.cursor() as cursor:
        # Fresh statistics, as autovacuum would have them on a live system;
        # without them the planner scans just-loaded tables sequentially.
        cursor.execute("ANALYZE")
    Workflow.objects.update(active=True)
    active_workflows_forget()
    Event.objects.filter(pk__in=ids).update(automation_pending=True)
    # The evaluation stage: what one evaluation task does per batch (lock the
    # pending events, fetch facts, evaluate 10 workflows per event, record the
    # matched runs with their explanations, clear the flags).
    backend_cpu = backend_cpu_seconds()
    process_cpu = time.process_time()
    started = time.perf_counter()
    to_run: list[str] = []
    for start in range(0, len(ids), args.batch):
        to_run += due_events_process(event_ids=ids[start : start + args.batch]).run_ids
        if time.perf_counter() - started > MAX_SECONDS_PER_PHASE:
            print("  (stopped at the time bound)")
            ids = ids[: start + args.batch]
            break
    elapsed = time.perf_counter() - started
    process_cpu = time.process_time() - process_cpu
    backend_cpu = backend_cpu_seconds() - backend_cpu
    runs = WorkflowRun.objects.count()
    print("1. one worker process, 100 active workflows (10 on the event type):")
    print(
        f"   evaluation: {len(ids)} events in {elapsed:.2f} s = "
        f"{len(ids) / elapsed:,.0f} events/s evaluated ({runs} runs recorded); "
        f"CPU per event {process_cpu / len(ids) * 1e6:.0f} µs worker + "
        f"{backend_cpu / len(ids) * 1e6:.0f} µs postgres"
    )
    # The action stage: each run's actions, one transaction per action.
    started = time.perf_counter()
    for run_id in to_run:
        workflow_run_advance(run_id=run_id)
    elapsed = time.perf_counter() - started
    print(
        f"   actions:    {len(to_run)} runs with actions in {elapsed:.2f} s = "
        f"{len(to_run) / elapsed:,.0f} runs/s"
    )


def _policy_round(ids: list[str], batch: int) -> Round:
    """Evaluate `ids` afresh and run their runs' actions: (events/s, runs/s, runs,
    statements per run, this process's CPU µs per run, its CPU µs per event evaluated,
    its PostgreSQL backend's CPU µs per run).
    Statements: Django's query log (emptied first: it keeps at most 9,000) plus those
    run through project.sql (prepared, on a psycopg cursor of their own that Django does
    not log)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automation.due import due_events_process
    from automation.workflows.models import WorkflowRun
    from automation.workflows.runner import workflow_run_advance
    from automation.workflows.selectors import active_workflows_forget
    from customers.models import Customer
    from events_app.models import Event
    from project import sql

    WorkflowRun.objects.all().delete()
    Customer.objects.update(tags=[])  # each round's add_tags writes, as the first did
    Customer.objects.filter(external_id__endswith="0").update(tags=["vip"])
    Event.objects.filter(pk__in=ids).update(automation_pending=True)
    active_workflows_forget()
    eval_cpu = time.process_time()
    started = time.perf_counter()
    to_run: list[str] = []
    for start in range(0, len(ids), batch):
        to_run += due_events_process(event_ids=ids[start : start + batch]).run_ids
    evaluated = len(ids) / (time.perf_counter() - started)
    eval_cpu = time.process_time() - eval_cpu
    prepared = 0
    execute = sql._execute

    def counted(*args: Any) -> Any:
        nonlocal prepared
        prepared += 1
        return execute(*args)

    backend_cpu = backend_cpu_seconds()
    cpu = time.process_time()
    started = time.perf_counter()
    sql._execute = counted  # type: ignore[assignment]
    connection.queries_log.clear()
    try:
        with CaptureQueriesContext(connection) as queries:
            for run_id in to_run:
                workflow_run_advance(run_id=run_id)
    finally:
        sql._execute = execute  # type: ignore[assignment]
    actions = len(to_run) / (time.perf_counter() - started)
    cpu = time.process_time() - cpu
    backend_cpu = backend_cpu_seconds() - backend_cpu
    runs = max(1, len(to_run))
    return (
        evaluated,
        actions,
        len(to_run),
        (len(queries) + prepared) / runs,
        cpu / runs * 1e6,
        eval_cpu / len(ids) * 1e6,
        backend_cpu / runs * 1e6,
    )


def _interleaved(ids: list[str], batch: int, policy: Any, block: int) -> list[float]:
    """Evaluate `ids` afresh, then run the runs' actions in blocks of `block` runs,
    alternately with and without `policy` on every workflow (the order flipping each
    pair): each adjacent pair's with / without rate. Blocks a second apart share the
    machine's load, so on a shared machine their ratio is steadier than whole rounds'."""
    from automation.due import due_events_process
    from automation.workflows.models import Workflow, WorkflowRun
    from automation.workflows.runner import workflow_run_advance
    from automation.workflows.selectors import active_workflows_forget
    from customers.models import Customer
    from events_app.models import Event

    WorkflowRun.objects.all().delete()
    Customer.objects.update(tags=[])
    Customer.objects.filter(external_id__endswith="0").update(tags=["vip"])
    Event.objects.filter(pk__in=ids).update(automation_pending=True)
    active_workflows_forget()
    to_run: list[str] = []
    for start in range(0, len(ids), batch):
        to_run += due_events_process(event_ids=ids[start : start + batch]).run_ids
    ratios = []
    for pair, start in enumerate(range(0, len(to_run) - 2 * block + 1, 2 * block)):
        rates: dict[bool, float] = {}
        for k, with_policy in enumerate((False, True) if pair % 2 == 0 else (True, False)):
            Workflow.objects.update(delivery_policy=policy if with_policy else None)
            chunk = to_run[start + k * block : start + (k + 1) * block]
            started = time.perf_counter()
            for run_id in chunk:
                workflow_run_advance(run_id=run_id)
            rates[with_policy] = len(chunk) / (time.perf_counter() - started)
        ratios.append(rates[True] / rates[False])
    return ratios


def phase_policy(args: argparse.Namespace) -> None:
    from django.db import connection

    from automation.workflows.models import Workflow, WorkflowRun
    from automation.workflows.policies.models import DeliveryPolicy, PolicyUsage
    from automation.workflows.policies.services import delivery_policy_create

    PolicyUsage.objects.all().delete()
    Workflow.objects.update(delivery_policy=None)
    DeliveryPolicy.objects.all().delete()
    ids: list[str] = []
    for offset in range(0, args.events, 1000):
        ids += store(items(min(1000, args.events - offset), offset))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    Workflow.objects.update(active=True)
    # Quiet hours that are not now (checked, never blocking); a cap never reached.
    hour = (datetime.now(UTC).hour + 6) % 24
    policy = delivery_policy_create(
        data={
            "key": "bench",
            "caps": [{"count": 10000, "window": "P1D", "actions": ["add_tags"]}],
            "quiet_hours": {
                "start": f"{hour:02d}:00",
                "end": f"{(hour + 2) % 24:02d}:00",
                "timezone_attribute": "timezone",
                "default_timezone": "UTC",
            },
            "on_blocked": "defer",
        }
    )
    # A warm-up round of each mode, not counted: the first round after loading ran on
    # tables without dead rows yet, and it was always a "without" round.
    for with_policy in (False, True):
        Workflow.objects.update(delivery_policy=policy if with_policy else None)
        _policy_round(ids, args.batch)
    best: dict[bool, Round] = {}
    # Per round (with, without) of evaluation and of actions: adjacent rounds share the
    # machine's state of the moment, so their ratio drifts less than the best figures.
    pairs: list[dict[bool, tuple[float, float, float]]] = []
    for round_number in range(args.rounds):
        # Alternating which mode goes first: the tables grow round by round, so a fixed
        # order would favour the first mode.
        pairs.append({})
        for with_policy in (False, True) if round_number % 2 == 0 else (True, False):
            Workflow.objects.update(delivery_policy=policy if with_policy else None)
            figures = _policy_round(ids, args.batch)
            pairs[-1][with_policy] = (figures[0], figures[1], figures[4] + figures[6])
            print(
                f"   round {'with' if with_policy else 'without'}: {figures[0]:,.0f} events/s "
                f"({figures[5]:,.0f} µs CPU per event), {figures[1]:,.0f} runs/s, "
                f"{figures[3]:.1f} statements and {figures[4]:,.0f} µs CPU per run "
                f"(+ {figures[6]:,.0f} µs postgres)"
            )
            kept = best.get(with_policy)
            best[with_policy] = (
                figures
                if kept is None
                else (
                    max(kept[0], figures[0]),
                    max(kept[1], figures[1]),
                    figures[2],
                    min(kept[3], figures[3]),
                    min(kept[4], figures[4]),
                    min(kept[5], figures[5]),
                    min(kept[6], figures[6]),
                )
            )
    blocked = sum(
        1
        for outcomes in WorkflowRun.objects.values_list("outcomes", flat=True)
        for o in outcomes
        if o["status"] != "succeeded"
    )
    interleaved: list[float] = []
    for _ in range(args.rounds):
        interleaved += _interleaved(ids, args.batch, policy, args.block)
    without, with_ = best[False], best[True]
    print(
        f"policy: {len(ids)} events, {with_[2]} runs with actions per round, best of "
        f"{args.rounds} rounds per mode (alternating), {blocked} actions blocked"
    )
    print(
        f"   evaluation: without {without[0]:,.0f} events/s, with {with_[0]:,.0f} events/s "
        f"= {with_[0] / without[0]:.0%} (goal >= 90 %); worker CPU per event "
        f"{without[5]:,.0f} -> {with_[5]:,.0f} µs"
    )
    print(
        f"   actions:    without {without[1]:,.0f} runs/s, with {with_[1]:,.0f} runs/s "
        f"= {with_[1] / without[1]:.0%} (goal >= 90 %)"
    )
    evaluation_ratio = statistics.median(p[True][0] / p[False][0] for p in pairs)
    actions_ratio = statistics.median(p[True][1] / p[False][1] for p in pairs)
    cpu_ratio = statistics.median(p[False][2] / p[True][2] for p in pairs)
    quartiles = statistics.quantiles(interleaved, n=4)
    # The first phase's figure, "evaluation, runs and their actions included": the
    # events of a round over the time to evaluate them and run their runs' actions.
    runs = max(1, with_[2])
    end_to_end = statistics.median(
        (len(ids) / p[False][0] + runs / p[False][1]) / (len(ids) / p[True][0] + runs / p[True][1])
        for p in pairs
    )
    print(
        f"   paired rounds (median of each round's with / without): evaluation "
        f"{evaluation_ratio:.0%}, actions {actions_ratio:.0%}, actions by CPU (worker + "
        f"postgres) {cpu_ratio:.0%}, events evaluated with their runs' actions "
        f"{end_to_end:.0%} (goal >= 90 %)"
    )
    print(
        f"   interleaved blocks of {args.block} runs ({len(interleaved)} pairs): actions with / "
        f"without median {statistics.median(interleaved):.0%} (quartiles "
        f"{quartiles[0]:.0%}-{quartiles[2]:.0%})"
    )
    print(
        f"   per run (one add_tags action): {without[3]:.1f} -> {with_[3]:.1f} statements, "
        f"worker CPU {without[4]:,.0f} -> {with_[4]:,.0f} µs "
        f"(by CPU, {without[4] / with_[4]:.0%} of the rate), postgres CPU "
        f"{without[6]:,.0f} -> {with_[6]:,.0f} µs"
    )


def phase_lag(args: argparse.Namespace, secret: str) -> None:
    from django.conf import settings
    from django.db import connection
    from rest_framework.test import APIClient

    from automation.workflows.models import Workflow, WorkflowRun
    from project.celery import app

    # Only the lag workflow matches everything; the 100 stay active and evaluated.
    Workflow.objects.filter(name="wf5").update(conditions={}, updated_at=datetime.now(UTC))
    WorkflowRun.objects.all().delete()
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    queue = f"herald-bench-{os.getpid()}"
    app.conf.update(broker_url=broker, task_always_eager=False, task_default_queue=queue)
    app._pool = None
    app.amqp._producer_pool = None
    settings.HERALD_AUTOMATION_BATCH_SIZE = 500
    env = {**os.environ, "CELERY_BROKER_URL": broker}
    main = (
        "import sys\nfrom project.celery import all_queues, app\n"
        "app.conf.task_default_queue = sys.argv[1]\n"
        "app.worker_main(['worker', '-P', sys.argv[2], '-c', sys.argv[3], "
        "'-Q', ','.join(all_queues(sys.argv[1])), "
        "'--without-gossip', '--without-mingle', '--without-heartbeat', '-l', 'warning'])"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", main, queue, args.pool, str(args.concurrency)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        # Polls the runs table every 5 ms from its own connection: "the run exists".
        import django.db

        last = datetime(2000, 1, 1, tzinfo=UTC)
        while not stop.is_set():
            rows = list(
                WorkflowRun.objects.filter(workflow__name="wf5", created_at__gte=last).values_list(
                    "event_id", "created_at"
                )
            )
            now = time.perf_counter()
            for event_id, created in rows:
                seen.setdefault(event_id, now)
                last = max(last, created - timedelta(seconds=2))
            time.sleep(0.005)
        django.db.connection.close()

    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        warm_up(client, worker)  # worker start-up, not measured
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        returned: dict[str, float] = {}
        per_batch = 100
        interval = per_batch / args.rate
        cpu_before = (process_cpu_seconds(worker.pid), backend_cpu_seconds(all_=True))
        started = time.perf_counter()
        for n in range(int(args.seconds * args.rate / per_batch)):
            due = started + n * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            response = client.post(
                f"{API}/events/batch", {"events": items(per_batch, n * 7)}, format="json"
            )
            at = time.perf_counter()
            assert response.status_code in {200, 201, 207}, response.content[:300]
            data = response.json()["data"]
            for event_id in (e["event_id"] for e in data["valid_events"]):
                returned[event_id] = at
        sent_for = time.perf_counter() - started
        deadline = time.perf_counter() + 60
        while len(seen) < len(returned) and time.perf_counter() < deadline:
            time.sleep(0.05)
        stop.set()
        watcher.join()
        worker_cpu = process_cpu_seconds(worker.pid) - cpu_before[0]
        postgres_cpu = backend_cpu_seconds(all_=True) - cpu_before[1]
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        connection.close()
    lags = sorted(seen[e] - returned[e] for e in returned if e in seen)
    q = statistics.quantiles(lags, n=100)
    print(
        f"2. lag POST /events/batch returned -> WorkflowRun exists, one Celery worker, "
        f"{len(returned)} events at {len(returned) / sent_for:,.0f} events/s:"
    )
    print(
        f"   p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms "
        f"({len(lags)}/{len(returned)} runs seen)"
    )
    print(
        f"   CPU per event: worker {worker_cpu / len(returned) * 1e6:.0f} µs "
        f"(pool {args.pool} x {args.concurrency}); postgres, all backends of the database "
        f"(ingest, worker, watcher) {postgres_cpu / len(returned) * 1e6:.0f} µs"
    )


def warm_up(client: Any, worker: subprocess.Popen[bytes]) -> None:
    """Ingest one matching event and wait (bounded) until the worker recorded its run:
    the worker is up, connected and has loaded the workflows before the clock starts."""
    from automation.workflows.models import WorkflowRun

    deadline = time.perf_counter() + 60
    response = client.post(f"{API}/events/batch", {"events": items(1, 0)}, format="json")
    event_id = response.json()["data"]["valid_events"][0]["event_id"]
    while not WorkflowRun.objects.filter(event_id=event_id).exists():
        if worker.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit("the Celery worker did not start")
        time.sleep(0.1)
    time.sleep(1)  # let the warm-up run's actions (if any) finish


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process and of its live child processes (a worker's pool)."""
    from bench.ingest import child_pids, cpu_seconds

    return sum(cpu_seconds(one) for one in [pid, *child_pids(pid)])


def backend_cpu_seconds(*, all_: bool = False) -> float:
    """CPU of this process's PostgreSQL backend, or of every backend on the database."""
    from django.db import connection

    with connection.cursor() as cursor:
        if all_:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        else:
            cursor.execute("SELECT pg_backend_pid()")
        pids = [row[0] for row in cursor.fetchall()]
    from bench.ingest import cpu_seconds

    return sum(cpu_seconds(pid) for pid in pids)


def main() -> None:
    args = parse_args()
    secret = setup(args)
    print(f"CPUs: {os.cpu_count()} (shared with other work: figures are noisy)")
    if args.policy:
        phase_policy(args)
        return
    phase_throughput(args)
    phase_lag(args, secret)


if __name__ == "__main__":
    main()
