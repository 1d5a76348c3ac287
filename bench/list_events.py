"""GET /events latency over HTTP at 1M events: median and p95 per case.

    .venv/bin/python bench/list_events.py [--events 1000000] [--port 8101] [--workers 2]

1. Migrates its own database (herald_bench_list, or --database-url) and loads
   --events events with `manage.py generate_events` unless that many exist.
2. Starts Herald under gunicorn on 127.0.0.1:--port and creates an API key.
3. For each case (offset 0 / 100000, with / without event_type_id, sorted by
   created_at / external_id): --warmup requests, then --requests timed ones.
4. Checks `total_items` against a direct SELECT COUNT(*), prints the table,
   stops the server. Figures are noisy when other work shares the CPUs.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from common import ensure_database

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API = "/rest-api/enterprise-interface/v1.0"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/herald_bench_list"
GOAL_MS = 50.0


@dataclass(frozen=True)
class Case:
    offset: int
    by_type: bool
    sort_field: str

    def label(self) -> str:
        filt = "event_type_id" if self.by_type else "-"
        return f"offset={self.offset:<7} filter={filt:<13} sort={self.sort_field}"


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return out.stdout


def load(env: dict[str, str], url: str, events: int) -> None:
    with psycopg.connect(url) as conn:
        have = conn.execute("SELECT count(*) FROM events_app_event").fetchone()[0]
    if have >= events:
        print(f"{have:,} events already loaded; skipping generate_events.")
        return
    print(f"{have:,} events present; generating {events - have:,} more ...")
    began = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "generate_events", "--events", str(events - have), "--seed", "7"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Generated" in line or "VACUUM" in line or "writing" in line:
            print("  " + line.rstrip())
    if proc.wait(timeout=1800) != 0:
        raise SystemExit("generate_events failed")
    print(f"  load took {time.monotonic() - began:.1f} s in total")


def start_server(
    env: dict[str, str], port: int, workers: int, auth: tuple[str, str]
) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group, stopped as a whole below
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit("gunicorn exited; is the port free?")
            try:
                requests.get(
                    f"http://127.0.0.1:{port}{API}/events",
                    params={"count": 1},
                    auth=auth,
                    timeout=10,
                )
                return server
            except requests.RequestException:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not answer within 60 s")
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def exact_count(url: str, event_type_id: str | None) -> int:
    with psycopg.connect(url) as conn:
        if event_type_id is None:
            row = conn.execute("SELECT count(*) FROM events_app_event").fetchone()
        else:
            row = conn.execute(
                "SELECT count(*) FROM events_app_event WHERE event_type_id = %s",
                (event_type_id,),
            ).fetchone()
    return int(row[0])


def busiest_type(url: str, *, besides: str | None = None) -> str:
    """The most frequent type, so offset 100000 still lands inside its events; `besides`:
    a type key left out (a benchmark's own ingested type, which grows run by run)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT e.event_type_id FROM events_app_event e "
            "JOIN events_app_eventtype t ON t.id = e.event_type_id "
            "WHERE t.key IS DISTINCT FROM %s GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [besides],
        ).fetchone()
    return str(row[0])


def measure(
    session: requests.Session, base: str, case: Case, type_id: str, warmup: int, n: int
) -> tuple[list[float], dict[str, object]]:
    params: dict[str, object] = {"count": 100, "offset": case.offset, "sort_field": case.sort_field}
    if case.by_type:
        params["event_type_id"] = type_id
    body: dict[str, object] = {}
    timings: list[float] = []
    for i in range(warmup + n):
        began = time.perf_counter()
        response = session.get(f"{base}{API}/events", params=params, timeout=30)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{case.label()}: HTTP {response.status_code} {response.text[:300]}")
        if i >= warmup:
            timings.append(elapsed)
        body = response.json()["data"]
    return timings, body


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def prepare(
    url: str, events: int, *, besides: str | None = None
) -> tuple[dict[str, str], tuple[str, str], str, dict[str | None, int]]:
    """Migrate the database and load `events`: the server's environment, a read key,
    the busiest event type (other than `besides`) and the exact counts (all, that type)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    ensure_database(url)
    manage(env, "migrate", "--verbosity", "0")
    load(env, url, events)
    name = f"bench-{int(time.time())}"
    secret = manage(env, "create_api_key", name, "--scopes", "read").strip().splitlines()[-1]
    type_id = busiest_type(url, besides=besides)
    counts = {None: exact_count(url, None), type_id: exact_count(url, type_id)}
    return env, (name, secret), type_id, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=50, help="Timed requests per case.")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000 or not 0 <= args.warmup <= 100:
        raise SystemExit("--requests must be 1..1000 and --warmup 0..100")

    env, (name, secret), type_id, counts = prepare(args.database_url, args.events)

    cases = [
        Case(offset, by_type, sort)
        for by_type in (False, True)
        for sort in ("created_at", "external_id")
        for offset in (0, 100_000)
    ]
    server = start_server(env, args.port, args.workers, (name, secret))
    rows: list[tuple[str, float, float, str]] = []
    try:
        session = requests.Session()
        session.auth = (name, secret)
        base = f"http://127.0.0.1:{args.port}"
        for case in cases:
            timings, body = measure(session, base, case, type_id, args.warmup, args.requests)
            expected = counts[type_id if case.by_type else None]
            total = body["total_items"]
            events = body["events"]
            ok = total == expected and isinstance(events, list) and len(events) == 100
            check = "exact" if ok else f"WRONG total_items={total} expected={expected}"
            rows.append((case.label(), statistics.median(timings), p95(timings), check))
    finally:
        stop_server(server)

    print()
    print(
        f"GET {API}/events?count=100 — {counts[None]:,} events "
        f"(event_type_id = busiest type, {counts[type_id]:,} events); "
        f"gunicorn --workers {args.workers}; {args.requests} timed requests per case "
        f"after {args.warmup} warm-up"
    )
    print(f"{'case':<58} {'median ms':>10} {'p95 ms':>8}  total_items")
    for label, median, p95_ms, check in rows:
        print(f"{label:<58} {median:>10.1f} {p95_ms:>8.1f}  {check}")
    worst = max(median for _, median, _, _ in rows)
    exact = all(check == "exact" for *_, check in rows)
    print(
        f"slowest median {worst:.1f} ms (goal < {GOAL_MS:.0f} ms): "
        f"{'met' if worst < GOAL_MS else 'NOT met'}; total_items "
        f"{'exact in every case' if exact else 'WRONG'}"
    )
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
