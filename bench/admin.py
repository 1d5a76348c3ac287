"""The admin's server time at 1 M events and 100 k customers, and the CSV export's speed
and memory.

    .venv/bin/python bench/admin.py [--events 1000000] [--customers 100000] [--requests 15]

1. Migrates its own database (herald_bench_admin, or DATABASE_URL) and loads the
   events and customers with `manage.py generate_events` (COPY) spread over the last
   30 days, unless that many are there; adds a busy customer with --busy events,
   workflow runs and webhook deliveries for a fifth of the events, and some rejected
   batch items; VACUUM ANALYZE.
2. Times each page in this process through Django's test client (server time: no
   network, no browser): --warmup requests, then --requests timed ones; prints the
   median and p95 against the goal.
3. Streams the CSV export of every event and of one type's events, counting rows per
   second and sampling the process's resident memory every 50,000 rows (flat means
   the export holds a chunk, not the file); the peak of Python's own allocations
   (tracemalloc) is measured on a second, shorter export.

    .venv/bin/python bench/admin.py --ingest-cost [--rounds 12]

measures instead what the dashboard's hourly counters cost batch ingestion: 1000-event
batches (3 property records each, new customers and refs) through the batch service
(events_app.ingestion.events_ingest_batch, what POST /events/batch calls; no HTTP) on
its own database (herald_bench_admin_ingest), in rounds that alternate the counters'
trigger functions with and without the hourly upsert (events_app migration 0012), so
both variants share the machine's load; prints the median events/s of each.
Figures are noisy when other work shares the CPUs: report them with `uptime`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The checkout first: bench/ holds scripts named like Herald's packages (automation.py).
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

from common import scratch_database  # noqa: E402

GOAL_MS = 300.0
BUSY_EXTERNAL_ID = "bench-busy-customer"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load(events: int, customers: int, busy: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from events_app.models import Event

    have = Event.objects.count()
    if have < events:
        print(f"{have:,} events present; generating {events - have:,} ...", flush=True)
        began = time.monotonic()
        call_command(
            "generate_events",
            events=events - have,
            customers=customers,
            months=1,
            seed=7,
            verbosity=0,
        )
        print(f"  generated in {time.monotonic() - began:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM customers_customer WHERE external_id = %s", [BUSY_EXTERNAL_ID]
        )
        if not cursor.fetchone()[0]:
            _load_extras(cursor, busy)
        cursor.execute("VACUUM ANALYZE")


def _load_extras(cursor: Any, busy: int) -> None:
    from django.utils import timezone

    from automation.webhooks.models import Endpoint
    from automation.workflows.models import Workflow
    from events_app.activity import Rejection, rejections_record
    from events_app.models import ApiClient, EventType

    print("Adding a busy customer, workflow runs, deliveries and rejections ...", flush=True)
    public_id = (
        "lpad(to_hex((extract(epoch FROM {t}) * 1000)::bigint), 12, '0') || "
        "substr(md5(random()::text), 1, 14)"
    )
    cursor.execute(
        f"""INSERT INTO customers_customer (id, external_id, email, attributes, tags,
            created_at, updated_at)
        SELECT {public_id.format(t="now()")}, %s, 'busy@example.com', '{{}}', '[]', now(), now()""",
        [BUSY_EXTERNAL_ID],
    )
    event_type = EventType.objects.order_by("key").first()
    assert event_type is not None
    cursor.execute(
        f"""INSERT INTO events_app_event (id, event_type_id, customer_id, data, occurred_at,
            created_at, state, is_delivered, automation_pending, depth)
        SELECT {public_id.format(t="t")}, %s,
            (SELECT id FROM customers_customer WHERE external_id = %s), '{{}}', t, t, 1, true,
            false, 0
        FROM (SELECT now() - random() * interval '29 days' AS t
              FROM generate_series(1, %s)) AS times""",
        [event_type.pk, BUSY_EXTERNAL_ID, busy],
    )
    workflow = Workflow.objects.create(name="bench", active=False)
    cursor.execute(
        f"""INSERT INTO automation_workflowrun (id, workflow_id, event_id, customer_id,
            workflow_version, actions, status, position, outcomes, error, explanation,
            segment_on, created_at)
        SELECT {public_id.format(t="created_at")}, %s, id, customer_id, 1, '[]',
            CASE WHEN random() < 0.05 THEN 'failed' ELSE 'succeeded' END, 0, '[]', '',
            '{{}}', '', created_at
        FROM events_app_event WHERE random() < 0.2""",
        [workflow.pk],
    )
    endpoint = Endpoint.objects.create(url="https://example.com/bench", secret="s" * 32)
    cursor.execute(
        f"""INSERT INTO automation_delivery (id, endpoint_id, event_id, message_id, payload,
            status, attempt_count, retry_step, created_at, last_error)
        SELECT {public_id.format(t="created_at")}, %s, id, 'msg_' || id, '{{}}',
            CASE WHEN r < 0.9 THEN 'succeeded' WHEN r < 0.95 THEN 'failed'
                WHEN created_at < now() - interval '1 day' THEN 'failed' ELSE 'pending' END,
            CASE WHEN r < 0.9 THEN 1 ELSE 3 END, 0, created_at, ''
        FROM (SELECT id, created_at, random() AS r FROM events_app_event
              WHERE random() < 0.2) AS picked""",
        [endpoint.pk],
    )
    client = ApiClient.objects.create(name="bench", secret_hash="0" * 64, secret_prefix="bench")
    for _ in range(200):
        rejections_record(
            api_client_id=client.pk,
            rejections=[
                Rejection(i, "event.event_type: Unknown event type key 'x'.", "x")
                for i in range(10)
            ],
            now=timezone.now(),
        )


def timed(client: Any, url: str, warmup: int, requests: int) -> tuple[float, float, int]:
    for _ in range(warmup):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return statistics.median(times), p95, len(response.content)


def export(client: Any, url: str, *, trace: bool) -> tuple[int, float, float, float]:
    """Rows, seconds, peak resident MB (sampled), peak traced MB (0 without `trace`)."""
    if trace:
        tracemalloc.start()
    began = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    rows, peak_rss = -1, rss_mb()
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        if rows % 50_000 < 2:
            peak_rss = max(peak_rss, rss_mb())
    seconds = time.perf_counter() - began
    traced = 0.0
    if trace:
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return rows, seconds, max(peak_rss, rss_mb()), traced


def ingest_cost(rounds: int, batches: int) -> None:
    """Median events/s of batch ingestion with and without the hourly counters."""
    import importlib
    import json
    import uuid

    import msgspec
    from django.db import connection, transaction

    from events_app.ingestion import events_ingest_batch
    from events_app.models import EventType, PropertyDefinition
    from events_app.schemas import EventCreateIn

    triggers = importlib.import_module("events_app.migrations.0012_event_hour_count_triggers")
    event_type, _ = EventType.objects.get_or_create(key="buy", defaults={"name": "Bench"})
    for property_id, value_type in (("amt", "number"), ("paid", "boolean"), ("sku", "string")):
        PropertyDefinition.objects.get_or_create(
            event_type=event_type, property_id=property_id, defaults={"value_type": value_type}
        )

    def batch() -> list[EventCreateIn]:
        prefix = uuid.uuid4().hex[:10]
        return [
            msgspec.convert(
                {
                    "event": {
                        "event_type": "buy",
                        "customer_external_id": f"c-{prefix}-{n % 100}",
                        "external_id": f"{prefix}-{n}",
                    },
                    "property_records": [
                        {"property_id": "amt", "property_value": n},
                        {"property_id": "paid", "property_value": True},
                        {"property_id": "sku", "property_value": f"s{n % 50}"},
                    ],
                },
                EventCreateIn,
            )
            for n in range(1000)
        ]

    results: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for with_hours in (True, False) if round_ % 2 else (False, True):
            with connection.cursor() as cursor:
                cursor.execute(triggers._functions(with_hours=with_hours))
            bodies = [batch() for _ in range(batches)]
            began = time.perf_counter()
            for body in bodies:
                events_ingest_batch(items=body, api_client_id=None)
            results[with_hours].append(batches * 1000 / (time.perf_counter() - began))
    # The trigger's own time per 1000-row INSERT (EXPLAIN ANALYZE reports it): the
    # precise figure, where the rounds above are as noisy as the machine.
    trigger_ms: dict[bool, list[float]] = {True: [], False: []}
    insert = """EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO events_app_event (id, event_type_id,
        customer_id, data, occurred_at, created_at, state, is_delivered, automation_pending,
        depth)
    SELECT lpad(to_hex(g), 26, '0'), %s, (SELECT id FROM customers_customer LIMIT 1), '{}',
        now(), now(), 1, true, false, 0 FROM generate_series(1, 1000) g"""
    for round_ in range(rounds * 2):
        for with_hours in (True, False) if round_ % 2 else (False, True):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(triggers._functions(with_hours=with_hours))
                cursor.execute(insert, [event_type.pk])
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                for trigger in plan[0]["Triggers"]:
                    if trigger["Trigger Name"] == "events_app_event_count_insert":
                        trigger_ms[with_hours].append(trigger["Time"])
                transaction.set_rollback(True)
    with connection.cursor() as cursor:
        cursor.execute(triggers._functions(with_hours=True))
    print(
        "  counter trigger per 1000-row INSERT (median): "
        f"{statistics.median(trigger_ms[False]):.2f} ms without, "
        f"{statistics.median(trigger_ms[True]):.2f} ms with the hourly counters"
    )
    without, with_ = statistics.median(results[False]), statistics.median(results[True])
    print(f"batch ingest, 1000-event batches, {rounds} rounds x {batches} batches each")
    print(f"  without hourly counters: {without:,.0f} events/s (median)")
    print(f"  with hourly counters:    {with_:,.0f} events/s (median), {with_ / without:.1%}")
    print(f"  all rounds without: {[round(x) for x in results[False]]}")
    print(f"  all rounds with:    {[round(x) for x in results[True]]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--busy", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-export", action="store_true", help="time the pages only")
    parser.add_argument("--ingest-cost", action="store_true", help="the counters' ingest cost")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()

    scratch_database("herald_bench_admin_ingest" if args.ingest_cost else "herald_bench_admin")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from customers.models import Customer
    from events_app.models import Event, EventType

    call_command("migrate", verbosity=0)
    if args.ingest_cost:
        ingest_cost(args.rounds, args.batches)
        return
    load(args.events, args.customers, args.busy)

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-admin", "b@example.com", "bench-pass")
    client = Client()
    client.force_login(user)

    busy = Customer.objects.get(external_id=BUSY_EXTERNAL_ID)
    some_type = EventType.objects.order_by("key").first()
    assert some_type is not None
    # An event of the middle of the table: the search's target.
    sample = Event.objects.filter(customer=busy).order_by("created_at")[:1].get()
    total = Event.objects.count()
    print(
        f"{total:,} events, {Customer.objects.count():,} customers; busy customer "
        f"{Event.objects.filter(customer=busy).count():,} events",
        flush=True,
    )

    pages = [
        ("dashboard (24 h)", "/admin/"),
        ("dashboard (7 d)", "/admin/?trend=7d"),
        ("dashboard (30 d)", "/admin/?trend=30d"),
        ("events changelist, first page", "/admin/events_app/event/"),
        (
            "events changelist, by type",
            f"/admin/events_app/event/?event_type__id__exact={some_type.pk}",
        ),
        ("events changelist, last 24 h", "/admin/events_app/event/?created=24h"),
        ("events search (event id)", f"/admin/events_app/event/?q={sample.pk}"),
        ("customers search (external id)", f"/admin/customers/customer/?q={BUSY_EXTERNAL_ID}"),
        ("busy customer's page", f"/admin/customers/customer/{busy.pk}/change/"),
        ("busy customer's events", f"/admin/events_app/event/?customer={busy.pk}"),
        ("workflow runs changelist", "/admin/automation/workflowrun/"),
        ("live feed (JSON)", "/admin/live/feed/"),
    ]
    print(f"\n{'page':<36} {'median ms':>10} {'p95 ms':>8} {'bytes':>9}  goal {GOAL_MS:.0f} ms")
    for label, url in pages:
        median, p95, size = timed(client, url, args.warmup, args.requests)
        verdict = "met" if median <= GOAL_MS else "NOT met"
        print(f"{label:<36} {median:>10.1f} {p95:>8.1f} {size:>9,}  {verdict}", flush=True)

    if args.no_export:
        return
    print(f"\n{'export':<36} {'rows':>9} {'rows/s':>9} {'RSS MB':>14} {'traced MB':>10}")
    exports = [
        ("events, all", "/admin/events_app/event/export.csv", False),
        (
            "events, one type",
            f"/admin/events_app/event/export.csv?event_type__id__exact={some_type.pk}",
            False,
        ),
        ("customers, all", "/admin/customers/customer/export.csv", False),
        ("workflow runs, all", "/admin/automation/workflowrun/export.csv", False),
        ("customers, all (tracemalloc)", "/admin/customers/customer/export.csv", True),
    ]
    for label, url, trace in exports:
        before = rss_mb()
        rows, seconds, peak, traced = export(client, url, trace=trace)
        print(
            f"{label:<36} {rows:>9,} {rows / seconds:>9,.0f} {before:>6.0f} -> {peak:>5.0f}"
            f" {traced:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
