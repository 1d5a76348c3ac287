"""Ingest and list figures at scale: is Herald as fast at 10 M events as at 1 M, with the
events table partitioned by month or not?

    .venv/bin/python bench/partitions.py --database-url postgres://…/herald_bench_10m \
        [--events 10000000] [--port 8121] [--runs 3] [--batches 10] [--requests 30]

1. Migrates the database (created if missing) and loads --events events with
   `manage.py generate_events` (COPY, spread over six months) unless that many exist.
   Nothing is truncated: the batches measured add to the data.
2. Says whether events_app_event is partitioned (and into how many partitions) and how
   many events and property records it holds.
3. Starts Herald under gunicorn (--workers) and measures, in this order:
   * GET /events: the eight cases of bench/list_events.py (offset 0 / 100000, with and
     without event_type_id, sorted by created_at / external_id), median and p95;
   * batch ingestion: --runs runs of --batches 1000-event batches (3 property records
     each, new refs) from --senders concurrent senders, events/s, median of the runs.
4. Prints one summary line per figure, to set beside a run at another size or layout;
   --save FILE writes the figures as JSON, and --against FILE (a run at 1 M saved so)
   prints each figure at this size beside that one, its ratio and whether it is within
   the goal (15 %).

It prints the machine's load and CPU count before and after (figures taken while other
work shares the CPUs are noisy) and how the deep page by created_at is planned (an
ordered Append reads the months newest first; a Merge Append merges every month). The
load is resumable: a run interrupted while loading goes on where the data ends. On a
quiet 2-core machine, loading 10 M takes about 15 minutes (much longer on a busy one),
the measurements about 3 minutes.

The code measured is this checkout's: for the unpartitioned figures, run the copy of this
file in a checkout from before the partitioning (bench/README.md says how the recorded
figures were made). Figures are noisy when other work shares the CPUs. Not a test.
bench/scale.py imports `main` from here for its partitions part.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any, NamedTuple

import psycopg
import requests
from ingest import CUSTOMERS, PROPERTIES, TYPE_KEY, make_batches, send_batches
from list_events import API, ROOT, Case, measure, p95, prepare, start_server, stop_server

GOAL_RATIO = 0.85  # figures at 10 M within 15 % of those at 1 M


def layout(url: str) -> str:
    with psycopg.connect(url) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events_app_event'::regclass"
        ).fetchone()[0]
        records = conn.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class "
            "WHERE relname = 'events_app_propertyrecord'"
        ).fetchone()[0]
        if parts:
            records = conn.execute(
                "SELECT sum(greatest(c.reltuples, 0))::bigint FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'events_app_propertyrecord'::regclass"
            ).fetchone()[0]
    kind = f"partitioned ({parts} partitions)" if parts else "unpartitioned"
    return f"{kind}, about {records:,} property records"


class WalState(NamedTuple):
    """The server's WAL counters (pg_stat_wal) and checkpoints (pg_stat_bgwriter)."""

    bytes: float
    full_page_images: int
    checkpoints: int

    def since(self, before: WalState) -> WalState:
        return WalState(
            self.bytes - before.bytes,
            self.full_page_images - before.full_page_images,
            self.checkpoints - before.checkpoints,
        )

    def describe(self, events: int) -> str:
        return (
            f"{self.bytes / events / 1024:.1f} KiB and {self.full_page_images / events:.2f} "
            f"full-page images per event, {self.checkpoints} checkpoint(s)"
        )


def wal_state(url: str) -> WalState:
    """A checkpoint makes the next change of every page write the whole page to the WAL:
    ingest right after one writes more, and more so the more distinct pages its index
    entries land on (more at 10 M than at 1 M). Printed per run so a slow run can be
    told from a slow layout. Counters of the whole server: a quiet machine's figures."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT w.wal_bytes, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req "
            "FROM pg_stat_wal w, pg_stat_bgwriter b"
        ).fetchone()
    return WalState(float(row[0]), int(row[1]), int(row[2]))


def analyze_changed(url: str) -> list[str]:
    """ANALYZE the event partitions that changed by more than a tenth since their last
    analysis, as autovacuum would (it may be off: it is on the shared machine these
    figures come from). Earlier runs' batches land in the current month; with its
    statistics stale the planner misjudges the lists filtered by type."""
    lines = []
    with psycopg.connect(url, autocommit=True) as conn:
        stale = conn.execute(
            "SELECT s.relname, s.n_mod_since_analyze, s.n_live_tup FROM pg_stat_user_tables s "
            "JOIN pg_inherits i ON i.inhrelid = s.relid "
            "WHERE i.inhparent = 'events_app_event'::regclass "
            "AND s.n_mod_since_analyze > 50 + 0.1 * s.n_live_tup ORDER BY 1"
        ).fetchall()
        for name, changed, live in stale:
            began = time.monotonic()
            conn.execute(f'ANALYZE "{name}"')
            lines.append(
                f"ANALYZE {name} ({changed:,} rows changed of {live:,}): "
                f"{time.monotonic() - began:.1f} s"
            )
    return lines


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"CPUs {os.cpu_count()}, load average {load} (1, 5, 15 min)"


def deep_page_plan(url: str) -> str:
    """How PostgreSQL reads GET /events?offset=100000 sorted by created_at."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN SELECT id FROM events_app_event ORDER BY created_at DESC, id DESC "
            "OFFSET 100000 LIMIT 100"
        ).fetchall()
        default = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
            "WHERE partrelid = 'events_app_event'::regclass AND partdefid <> 0)"
        ).fetchone()[0]
    plan = "\n".join(r[0] for r in rows)
    how = (
        "Merge Append (every month's index merged)"
        if "Merge Append" in plan
        else "ordered Append (months read newest first)"
        if "Append" in plan
        else "one index"
    )
    return f"default partition: {'yes' if default else 'no'}; deep page by created_at: {how}"


DEEP_PAGES = {
    "offset=100000 sort=created_at": "ORDER BY created_at DESC, id DESC OFFSET 100000",
    "offset=100000 sort=external_id": "ORDER BY external_id DESC, id DESC OFFSET 100000",
}


def default_partition_effect(url: str, rounds: int = 5) -> list[str]:
    """The deep pages' query (the page's ids, as the list's deferred join reads them)
    timed by EXPLAIN ANALYZE without and with a default partition, alternating: the
    default is created under a savepoint and rolled back each round (nothing is kept).
    Shows what dropping it (migration events_app 0016) did, on this data, in one run."""
    lines = []
    with psycopg.connect(url) as conn:
        if not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
            "WHERE partrelid = 'events_app_event'::regclass AND partdefid = 0)"
        ).fetchone()[0]:
            return ["(not measured: the table is unpartitioned or has a default partition)"]
        for label, order in DEEP_PAGES.items():
            sql = (
                f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM events_app_event {order} LIMIT 100"
            )
            times: dict[bool, list[float]] = {False: [], True: []}
            nodes: dict[bool, str] = {}
            for _ in range(rounds):
                for default in (False, True):
                    conn.execute("SAVEPOINT probe")
                    if default:
                        conn.execute(
                            "CREATE TABLE events_app_event_probe_default "
                            "PARTITION OF events_app_event DEFAULT"
                        )
                    plan = conn.execute(sql).fetchone()[0][0]
                    conn.execute("ROLLBACK TO SAVEPOINT probe")
                    times[default].append(plan["Execution Time"])
                    nodes[default] = plan["Plan"]["Plans"][0]["Node Type"]
            lines.append(
                f"  {label:<32} without: {statistics.median(times[False]):6.1f} ms "
                f"({nodes[False]}); with a default partition: "
                f"{statistics.median(times[True]):6.1f} ms ({nodes[True]})"
            )
        conn.rollback()
    return lines


def compare(figures: dict[str, float], path: str) -> None:
    """Each figure beside the same figure of a saved run (at 1 M): ratio, within goal?"""
    with open(path) as file:
        base = json.load(file)
    print(f"\nagainst {path} ({base.get('_events', '?'):,} events, {base.get('_machine', '')}):")
    print(f"{'figure':<58} {'there':>9} {'here':>9} {'ratio':>7}  goal")
    for name, here in figures.items():
        if name.startswith("_") or name not in base:
            continue
        there = base[name]
        # Lists: time, lower is better; ingest: a rate, higher is better.
        ratio = here / there if there else float("inf")
        ok = ratio >= GOAL_RATIO if name.startswith("batch") else ratio <= 1 / GOAL_RATIO
        print(f"{name:<58} {there:>9.1f} {here:>9.1f} {ratio:>7.2f}  {'ok' if ok else 'MISSED'}")


def ingest_setup(env: dict[str, str]) -> str:
    """The bench event type (bench/ingest.py's) and its customers, once; an API key."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from customers.models import Customer
    from events_app.api_clients import api_client_create
    from events_app.models import EventType, PropertyDefinition

    event_type, _ = EventType.objects.get_or_create(key=TYPE_KEY, defaults={"name": "Bench"})
    for property_id, value_type in PROPERTIES:
        PropertyDefinition.objects.update_or_create(
            event_type=event_type, property_id=property_id, defaults={"value_type": value_type}
        )
    names = [f"c{n:04d}" for n in range(CUSTOMERS)]
    have = set(Customer.objects.filter(external_id__in=names).values_list("external_id", flat=True))
    Customer.objects.bulk_create([Customer(external_id=n) for n in names if n not in have])
    client, secret = api_client_create(name=f"bench-{uuid.uuid4().hex[:8]}")
    connection.close()
    return "Basic " + base64.b64encode(f"{client.name}:{secret}".encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--port", type=int, default=8121)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=30, help="Timed requests per list case.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="Batch runs (median reported).")
    parser.add_argument("--batches", type=int, default=10, help="1000-event batches per run.")
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--save", help="write the figures to this JSON file")
    parser.add_argument("--against", help="a JSON file --save wrote at 1 M: print ratios")
    args = parser.parse_args()
    print(f"start {time.strftime('%H:%M:%S')}: {machine()}")
    began = time.monotonic()
    # The lists filter by the busiest type of the loaded data, not by the type this
    # benchmark ingests (earlier runs' batches would make it the busiest at 1 M only).
    env, (name, secret), type_id, counts = prepare(args.database_url, args.events, besides=TYPE_KEY)
    for line in analyze_changed(args.database_url):
        print(line)
    auth = ingest_setup(env)
    print(f"{counts[None]:,} events, {layout(args.database_url)}")
    print(deep_page_plan(args.database_url))
    print("deep pages' id query, EXPLAIN ANALYZE medians, without / with a default partition:")
    for line in default_partition_effect(args.database_url):
        print(line)

    server = start_server(env, args.port, args.workers, (name, secret))
    rows: list[tuple[str, float, float]] = []
    rates: list[float] = []
    wal: list[WalState] = []
    try:
        session = requests.Session()
        session.auth = (name, secret)
        base = f"http://127.0.0.1:{args.port}"
        for by_type in (False, True):
            for sort in ("created_at", "external_id"):
                for offset in (0, 100_000):
                    case = Case(offset, by_type, sort)
                    timings, body = measure(
                        session, base, case, type_id, args.warmup, args.requests
                    )
                    expected = counts[type_id if by_type else None]
                    if body["total_items"] != expected:
                        raise SystemExit(f"{case.label()}: total_items {body['total_items']}")
                    rows.append((case.label(), statistics.median(timings), p95(timings)))
        for run in range(args.runs):
            bodies = make_batches(f"parts-{uuid.uuid4().hex[:6]}-r{run}", args.batches)
            before = wal_state(args.database_url)
            elapsed, result = send_batches(args.port, auth, bodies, args.senders)
            assert result["valid"] == 1000 * args.batches, result
            rates.append(result["valid"] / elapsed)
            wal.append(wal_state(args.database_url).since(before))
    finally:
        stop_server(server)

    print(
        f"\nGET {API}/events?count=100, gunicorn --workers {args.workers}, "
        f"{args.requests} timed requests per case"
    )
    print(f"{'case':<58} {'median ms':>10} {'p95 ms':>8}")
    for label, median, p95_ms in rows:
        print(f"{label:<58} {median:>10.1f} {p95_ms:>8.1f}")
    print(
        f"batch ingest, {args.batches} x 1000 events x 3 property records, new refs, "
        f"{args.senders} senders: median {statistics.median(rates):,.0f} events/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})"
    )
    print(
        "  per run, the server's WAL (every database) and checkpoints begun: "
        + "; ".join(w.describe(1000 * args.batches) for w in wal)
    )
    figures: dict[str, Any] = {label: median for label, median, _ in rows}
    figures["batch ingest events/s"] = statistics.median(rates)
    figures.update(_events=counts[None], _machine=machine())
    print(f"end {time.strftime('%H:%M:%S')} ({time.monotonic() - began:,.0f} s): {machine()}")
    if args.save:
        with open(args.save, "w") as file:
            json.dump(figures, file, indent=1)
    if args.against:
        compare(figures, args.against)
    print(
        f"summary: events={counts[None]} slowest_list_median_ms="
        f"{max(m for _, m, _ in rows):.1f} mean_list_median_ms="
        f"{statistics.mean(m for _, m, _ in rows):.1f} "
        f"batch_events_per_s={statistics.median(rates):.0f} "
        f"(goal at 10 M: within {1 - GOAL_RATIO:.0%} of the same layout at 1 M)"
    )


if __name__ == "__main__":
    main()
