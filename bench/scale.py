"""Scaling benchmark: deliveries/s and evaluations/s with 1, 2 and 4 worker processes.

    .venv/bin/python bench/scale.py [--workers 1,2,4] [--deliveries 5000] [--events 40000]
                                    [--redis-db 12] [--keep] [--part workers|partitions]

Each worker process is the Procfile's `deliveries` or `evaluation` line (a thread pool:
DELIVERY_THREADS, EVALUATION_THREADS), started as the topology test starts them
(tests/topology/processes.py). Per worker count:
  1. deliveries/s: a backlog of --deliveries signed POSTs to 8 endpoints of a loopback
     receiver (in this process), created in one transaction and handed on at its commit
     as the fan-out of new events does (a send task for as many of each endpoint as its
     concurrency limit; the follow-on loops and the dispatcher take the rest);
  2. evaluations/s: a backlog of --events events ingested (events_store, as the API
     does, 1000 per call) with 100 active workflows (10 on the event type, one of them
     matching every event: "evaluated" = it has its run).
Beside the workers run beat and one `schedules` worker (the periodic jobs: the delivery
dispatcher, `due.claim`), as in a deployment. The backlog is made in one transaction once
every process is ready; the rate counts the
items done from its commit to 90 % of the backlog (the workers' start-up skew and the
last stragglers left out; the publishing at the commit, in this process, counts).
Beside each rate: the CPU the worker processes, PostgreSQL's backends and this process
(receiver, polling) used, and how busy the whole machine was (/proc/stat, every
process, other people's too). Each row ends with its verdict: the machine is the limit
(it was at least 90 % busy: more processes could not help) or Herald is (CPU was left).
Below a row: how the runs of the tasks ended, from the workers' logs (send tasks: sent
their delivery, or found it sent by a follow-on; claimer runs: events each claimed).
Goal: 2 workers >= 1.7 x one, where the CPUs allow it.

`--part partitions` runs bench/partitions.py (10 M events, partitioned or not) instead,
when that file exists: one entry point for the scale figures.

The scratch database (herald_topo_scale, or DATABASE_URL) is created, migrated and, unless
--keep, dropped at the end; the Redis keys (prefix topo-scale:) are deleted. This prints
figures; it asserts nothing (not a test).
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("workers", "partitions"), default="workers")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--only", choices=("deliveries", "evaluation"), help="measure one kind of work only"
    )
    return parser.parse_args()


ARGS = parse_args()
if ARGS.part == "partitions":
    partitions = ROOT / "bench" / "partitions.py"
    if not partitions.exists():
        raise SystemExit("bench/partitions.py is not in this checkout")
    sys.argv = [str(partitions)]
    runpy.run_path(str(partitions), run_name="__main__")
    raise SystemExit(0)

from common import scratch_database  # noqa: E402

DATABASE_URL = scratch_database("herald_topo_scale")
BROKER = f"redis://127.0.0.1:6379/{ARGS.redis_db}"
KEY_PREFIX = "topo-scale:"
os.environ.update(
    DJANGO_SETTINGS_MODULE="project.settings",
    CELERY_BROKER_URL=BROKER,
    HERALD_BROKER_KEY_PREFIX=KEY_PREFIX,
    HERALD_OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8",
    HERALD_RATE_LIMIT_REDIS_URL="db",
)
os.environ.setdefault("HERALD_TEST_PORTS", "8760-8779")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from automation.due import CLAIM_TASK  # noqa: E402
from automation.webhooks.deliveries import deliveries_enqueue_on_commit, delivery_build  # noqa: E402
from automation.webhooks.models import Delivery, Endpoint  # noqa: E402
from automation.webhooks.services import endpoint_create  # noqa: E402
from automation.workflows.models import Workflow, WorkflowRun  # noqa: E402
from automation.workflows.services import WorkflowInput, workflow_create  # noqa: E402
from bench.automation import CUSTOMERS, OTHER_TYPES, TYPE_KEY, items, leaf_mix, store  # noqa: E402
from bench.ingest import cpu_seconds  # noqa: E402
from tests.receiver import Receiver, local_receiver  # noqa: E402
from tests.topology.processes import ProcessGroup, topology_env  # noqa: E402

ENDPOINTS = 8
# The machine's busy share from which a row counts as limited by the machine: the
# CPUs were (nearly) all in use, so more processes could not have gone faster.
SATURATED = 0.9
TIME_LIMIT = 300.0  # seconds one measurement may take before it is given up


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def backend_pids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [row[0] for row in cursor.fetchall()]


class Cpu:
    """CPU seconds of the workers, of PostgreSQL's backends and of this process, and the
    machine's busy share, between start() and stop()."""

    def __init__(self, worker_pids: list[int], periodic_pids: list[int]) -> None:
        self.worker_pids = worker_pids
        self.periodic_pids = periodic_pids

    def _snapshot(self) -> tuple[float, dict[int, float], float, tuple[int, int], float]:
        workers = sum(cpu_seconds(pid) for pid in self.worker_pids)
        backends = {pid: cpu_seconds(pid) for pid in backend_pids()}
        periodic = sum(cpu_seconds(pid) for pid in self.periodic_pids)
        return workers, backends, time.process_time(), machine_busy_ticks(), periodic

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self, items: int) -> tuple[str, float]:
        """The CPU line of a row, and the machine's busy share."""
        workers, backends, own, (busy, total), periodic = self._snapshot()
        w0, b0, o0, (busy0, total0), p0 = self.before
        postgres = sum(now - b0.get(pid, 0.0) for pid, now in backends.items())
        share = (busy - busy0) / max(total - total0, 1)
        verdict = (
            "the machine is the limit"
            if share >= SATURATED
            else "Herald is the limit (CPU to spare)"
        )
        per_item = 1e6 / max(items, 1)
        return (
            f"CPU per item: workers {(workers - w0) * per_item:,.0f} µs, postgres "
            f"{postgres * per_item:,.0f} µs, beat+schedules {(periodic - p0) * per_item:,.0f} "
            f"µs, bench {(own - o0) * per_item:,.0f} µs; "
            f"machine {share:.0%} busy  <- {verdict}"
        ), share


def measure(
    group: ProcessGroup, kind: str, n: int, fill: Callable[[], int], done: Callable[[], int]
) -> tuple[float, str, float]:
    """Start n workers of `kind`, then give them a backlog in one transaction (`fill`
    returns its size); the rate counts what was done from the commit (nothing can be
    done before it) to 90 % of the backlog (start-up skew and stragglers left out)."""
    processes = [group.start(kind) for _ in range(n)]
    # The periodic jobs, as a deployment runs them: beat, and a `schedules` worker for
    # the default queue (the delivery dispatcher sends what follow-on sends leave).
    periodic = [group.start("beat"), group.start("schedules")]
    for process in processes + periodic:
        process.wait_ready(timeout=120)
    cpu = Cpu([p.popen.pid for p in processes], [p.popen.pid for p in periodic])
    committed: list[float] = []
    with transaction.atomic():
        # Registered first, so it runs first at the commit, before the enqueuing.
        transaction.on_commit(lambda: committed.append(time.perf_counter()))
        total = fill()
        cpu.start()
    started, first = committed[0], 0
    target = int(total * 0.9)
    count = first
    while count < target:
        if time.perf_counter() - started > TIME_LIMIT:
            raise SystemExit(f"only {count} of {total} done within {TIME_LIMIT:g} s")
        time.sleep(0.1)
        count = done()
    elapsed = time.perf_counter() - started
    usage, share = cpu.stop(count - first)
    group.stop_all()
    return (count - first) / elapsed, usage, share


def task_outcomes(group: ProcessGroup, task: str) -> str:
    """How the runs of `task` ended, from the workers' logs (Celery logs each return
    value at INFO): e.g. deliveries sent by their own task, found done by a follow-on
    ('not-due') or bounced off an endpoint at its limit ('endpoint-busy')."""
    pattern = re.compile(rf"Task {re.escape(task)}\[[^]]+\] succeeded in [^:]+: '?([\w-]+)'?")
    outcomes: Counter[str] = Counter()
    for process in group.processes:
        outcomes.update(pattern.findall(process.log()))
    return ", ".join(f"{count:,} x {word}" for word, count in outcomes.most_common())


def measure_deliveries(group: ProcessGroup, n: int, receiver: Receiver) -> tuple[float, str, float]:
    endpoints = list(Endpoint.objects.all())

    def fill() -> int:
        now = timezone.now()
        rows = [
            delivery_build(endpoints[i % ENDPOINTS], {"i": i}, None, None, now)
            for i in range(ARGS.deliveries)
        ]
        # As the fan-out of new events hands them on (deliveries_fan_out): a send task
        # for as many of each endpoint as its concurrency limit, the rest left due for
        # the senders' follow-on and the dispatcher. A task per delivery would mostly
        # find its delivery sent already by a follow-on ("not-due").
        limit = int(settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY)
        for i, row in enumerate(rows):
            if i // ENDPOINTS >= limit:
                row.queued_until = None
        Delivery.objects.bulk_create(rows, batch_size=1000)
        deliveries_enqueue_on_commit([r.pk for r in rows if r.queued_until is not None])
        return len(rows)

    rate, usage, share = measure(
        group, "deliveries", n, fill, lambda: Delivery.objects.filter(status="succeeded").count()
    )
    usage += f"\n      send tasks run: {task_outcomes(group, 'automation.deliver_one')}"
    Delivery.objects.all().delete()
    receiver.requests.clear()
    return rate, usage, share


def measure_evaluations(group: ProcessGroup, n: int) -> tuple[float, str, float]:
    def fill() -> int:
        stored = 0
        for offset in range(0, ARGS.events, 1000):
            stored += len(store(items(min(1000, ARGS.events - offset), offset)))
        return stored

    rate, usage, share = measure(
        group,
        "evaluation",
        n,
        fill,
        lambda: WorkflowRun.objects.filter(workflow__name="probe").count(),
    )
    usage += f"\n      claimer runs (x events claimed): {task_outcomes(group, CLAIM_TASK)}"
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_workflowrun, events_app_propertyrecord, events_app_event CASCADE"
        )
    return rate, usage, share


def setup() -> None:
    from customers.models import Customer
    from events_app.models import EventType, PropertyDefinition

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE automation_workflowrun, automation_workflow_trigger_event_types, "
            "automation_workflow, automation_deliveryattempt, automation_delivery, "
            "automation_endpoint_event_types, automation_endpoint, events_app_propertyrecord, "
            "events_app_event, customers_customer, events_app_propertydefinition, "
            "events_app_eventtype CASCADE"
        )
    purchase = EventType.objects.create(key=TYPE_KEY, name="Purchase")
    for prop, kind in (("amount", "number"), ("paid", "boolean"), ("sku", "string")):
        PropertyDefinition.objects.create(event_type=purchase, property_id=prop, value_type=kind)
    others = [EventType.objects.create(key=f"other_{i}", name=f"O{i}") for i in range(OTHER_TYPES)]
    Customer.objects.bulk_create(
        [
            Customer(
                external_id=f"c{i}",
                email=f"c{i}@example.com",
                attributes={"country": ["CZ", "SK", "DE", "US"][i % 4], "age": 20 + i % 40},
            )
            for i in range(CUSTOMERS)
        ]
    )
    for i in range(99):
        on_purchase = i < 9
        workflow_create(
            data=WorkflowInput(
                name=f"wf{i}",
                trigger_event_types=[TYPE_KEY if on_purchase else others[i % OTHER_TYPES].key],
                conditions=leaf_mix(i) if on_purchase else {"property": "x", "op": "exists"},
                actions=[],
            )
        )
    # One run per event: "every event has its run" is what the timer waits for.
    workflow_create(
        data=WorkflowInput(name="probe", trigger_event_types=[TYPE_KEY], conditions={}, actions=[])
    )
    assert Workflow.objects.filter(active=True).count() == 100


def cleanup(log_dir: Path) -> None:
    client = redis.Redis.from_url(BROKER)
    for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=500):
        client.delete(key)
    client.close()
    connection.close()
    if not ARGS.keep:
        import psycopg

        name = DATABASE_URL.rsplit("/", 1)[1]
        admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"Dropped database {name}; worker logs in {log_dir}")


def main() -> None:
    counts = [int(n) for n in ARGS.workers.split(",")]
    log_dir = Path(tempfile.mkdtemp(prefix="herald-scale-"))
    env: dict[str, Any] = topology_env(
        database_url=DATABASE_URL,
        broker_url=BROKER,
        key_prefix=KEY_PREFIX,
        var_dir=log_dir / "var",
        HERALD_RATE_LIMIT_REDIS_URL="db",
    )
    setup()
    busy0, total0 = machine_busy_ticks()
    time.sleep(2)
    busy1, total1 = machine_busy_ticks()
    idle_share = (busy1 - busy0) / max(total1 - total0, 1)
    print(
        f"CPUs: {os.cpu_count()}; before starting, the machine was {idle_share:.0%} busy "
        "with other work (shared machines make figures noisy)"
    )
    print("workers: the Procfile's lines; deliveries: --pool threads -c 32 per process, ")
    print("evaluation: --pool threads -c 4 per process, 100 active workflows (10 on the type)")
    results: dict[str, dict[int, tuple[float, float]]] = {"deliveries": {}, "evaluation": {}}
    try:
        if ARGS.only in (None, "deliveries"):
            with local_receiver() as receiver:
                for i in range(ENDPOINTS):
                    # Kind "workflow": subscribed to no event type, so part 2 sends nothing.
                    endpoint_create(url=receiver.url(f"/hook{i}"), kind="workflow")
                print(
                    f"1. deliveries: {ARGS.deliveries} to {ENDPOINTS} endpoints, loopback receiver"
                )
                for n in counts:
                    with ProcessGroup(env=env, log_dir=log_dir) as group:
                        rate, usage, share = measure_deliveries(group, n, receiver)
                    results["deliveries"][n] = (rate, share)
                    print(
                        f"   {n} worker process{'es' if n > 1 else '  '}: {rate:6,.0f}/s  {usage}"
                    )
        if ARGS.only in (None, "evaluation"):
            print(f"2. evaluation: {ARGS.events} events, 100 active workflows")
            for n in counts:
                with ProcessGroup(env=env, log_dir=log_dir) as group:
                    rate, usage, share = measure_evaluations(group, n)
                results["evaluation"][n] = (rate, share)
                print(f"   {n} worker process{'es' if n > 1 else '  '}: {rate:6,.0f}/s  {usage}")
        for kind, rates in results.items():
            if 1 in rates and 2 in rates:
                ratio = rates[2][0] / rates[1][0]
                busy = rates[2][1]
                applies = (
                    f"the goal does not apply: the machine was {busy:.0%} busy with 2 workers"
                    if busy >= SATURATED
                    else f"the goal applies: the machine was {busy:.0%} busy with 2 workers"
                )
                print(f"{kind}: 2 workers = {ratio:.2f} x one (goal >= 1.7; {applies})")
    finally:
        cleanup(log_dir)


if __name__ == "__main__":
    main()
