"""Simulation over stored history: events replayed per second by one worker.

    .venv/bin/python bench/simulate.py [--events 10000000] [--generate N] [--customers N]
                                       [--months 3]

1. Migrates its own database (herald_bench_simulate, or DATABASE_URL) and loads the
   events: `manage.py generate_events` (COPY; four types: api_call, login, purchase,
   signup, about 47 / 29 / 18 / 6 %; property records; new customers) for the first
   --generate (default: all of --events) over the last --months, then, up to
   --events, copies of the stored events (new ids, 17 minutes later, same customers,
   no refs or property records: one INSERT … SELECT per doubling, far faster than
   generating on a shared machine), unless that many are there; VACUUM ANALYZE.
2. Simulates, in this process (one worker: this process and its PostgreSQL backend),
   a saved workflow triggered by api_call with a frequency condition ("2 or more
   purchases within 30 days") over the whole period, set-based (one statement:
   automation.workflows.simulation.setbased), for each re-entry policy.
3. The same workflow with a property leaf added (which the streaming replay answers,
   page by page in Python) over a shorter period, for comparison.

Prints events considered (triggered events evaluated) per second and stored events
read per second (the trigger and the counted types) against the goal of 100,000
events/s per worker. Figures, not a test: report them with `uptime`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

from common import scratch_database  # noqa: E402

GOAL = 100_000
FREQUENT_BUYER = {"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--generate", type=int, default=None, help="generated; then copies")
    parser.add_argument("--customers", type=int, default=None, help="default: events / 20")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--streamed-days", type=int, default=3, help="period of step 3")
    return parser.parse_args()


COPY_EVENTS = """
INSERT INTO events_app_event (id, external_id, secondary_external_id, data, occurred_at,
    created_at, state, completed_at, failed_at, is_delivered, automation_pending, depth,
    customer_id, event_type_id, api_client_id)
SELECT substr(id, 1, 12) || substr(md5(id || %s), 1, 14), NULL, NULL, data,
    occurred_at + interval '17 minutes', created_at, state, completed_at, failed_at,
    is_delivered, false, depth, customer_id, event_type_id, api_client_id
FROM events_app_event ORDER BY created_at, id LIMIT %s
"""


def load(events: int, generate: int | None, customers: int | None, months: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from events_app.models import Event

    have = Event.objects.count()
    wanted = min(events, generate or events)
    grew = False
    if have < wanted:
        print(f"{have:,} events present; generating {wanted - have:,} ...", flush=True)
        began = time.monotonic()
        call_command(
            "generate_events",
            events=wanted - have,
            customers=customers,
            months=months,
            seed=11,
            verbosity=0,
        )
        print(f"  generated in {time.monotonic() - began:.0f} s", flush=True)
        have, grew = wanted, True
    copy = 0
    while have < events:
        copy += 1
        began = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(COPY_EVENTS, [f"copy{copy}-{have}", min(have, events - have)])
            have += cursor.rowcount
        print(f"  copied up to {have:,} events in {time.monotonic() - began:.0f} s", flush=True)
        grew = True
    if grew:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def simulate(workflow_id: str, days: int | None = None) -> tuple[float, dict]:
    from django.db.models import Max, Min

    from automation.workflows.simulation.services import simulation_create
    from events_app.models import Event

    bounds = Event.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    end = bounds["last"] + timedelta(seconds=1)
    start = bounds["first"] if days is None else end - timedelta(days=days)
    began = time.perf_counter()
    simulation = simulation_create(start=start, end=end, workflow_id=workflow_id)
    if simulation.status == "running":  # a large period: the task, here, inline
        from automation.workflows.simulation.services import simulation_run

        simulation_run(simulation_id=simulation.pk)
        simulation.refresh_from_db()
    elapsed = time.perf_counter() - began
    assert simulation.status == "done", simulation.error
    return elapsed, {"start": start, "end": end, **(simulation.result or {})}


def streamed_rows(start: object, end: object) -> int:
    from events_app.models import Event, EventType

    types = EventType.objects.filter(key__in=["api_call", "purchase"])
    return Event.objects.filter(
        event_type__in=types, occurred_at__gte=start, occurred_at__lt=end
    ).count()


def report(label: str, elapsed: float, result: dict, lookback_days: int) -> None:
    considered = result["events_considered"]
    read = streamed_rows(result["start"] - timedelta(days=lookback_days), result["end"])
    rate = considered / elapsed if elapsed else 0.0
    print(
        f"{label}: {considered:,} events considered in {elapsed:.1f} s = {rate:,.0f} events/s "
        f"({read / elapsed:,.0f} stored events read/s); would_run {result['would_run']:,}; "
        f"goal >= {GOAL:,}/s: {'met' if rate >= GOAL else 'NOT met'}",
        flush=True,
    )


def main() -> None:
    args = parse_args()
    scratch_database("herald_bench_simulate")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    load(args.events, args.generate, args.customers, args.months)

    from automation.workflows.models import Workflow
    from automation.workflows.services import WorkflowInput, workflow_create
    from events_app.models import Event

    print(f"{Event.objects.count():,} stored events; load average {os.getloadavg()[0]:.1f}")
    Workflow.objects.filter(name__startswith="bench ").delete()
    for reentry in ("every_event", "once_per_customer", "once_per_customer_per:P7D"):
        workflow = workflow_create(
            data=WorkflowInput(
                name=f"bench {reentry}",
                trigger_event_types=["api_call"],
                conditions=FREQUENT_BUYER,
                reentry=reentry,
                active=False,
            )
        )
        elapsed, result = simulate(workflow.pk)
        report(f"set-based, {reentry}", elapsed, result, 30)
    streamed = workflow_create(
        data=WorkflowInput(
            name="bench streamed",
            trigger_event_types=["api_call"],
            conditions={
                "all": [
                    FREQUENT_BUYER,
                    {"property": "processing_duration", "op": "gte", "value": 0},
                ]
            },
            active=False,
        )
    )
    elapsed, result = simulate(streamed.pk, days=args.streamed_days)
    report(f"streamed (a property leaf), last {args.streamed_days} days", elapsed, result, 30)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
