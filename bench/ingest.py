"""Ingestion benchmark: Herald under gunicorn against PostgreSQL, and the raw COPY floor.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_h4_bench \
        .venv/bin/python bench/ingest.py [--port 8201] [--workers 4] [--runs 5]
        [--only singles]

Prints, in one run:
  * batch ingestion over HTTP (1000-event batches, 3 property records each, new refs):
    events/s, median of --runs runs;
  * the same batches replayed (every event a duplicate ref): events/s;
  * single POST /events from --clients concurrent client processes: requests/s, p50/p99;
  * the raw floor: psycopg COPY of the same rows into the same tables, events/s, and
    the ratio Herald / COPY.
--only singles runs just the single-POST phase (after the same warm-up).
--webhooks N / --workflows N configure that many webhook endpoints / workflows once
those features exist; until then the bench says they are not configured.

The database named by DATABASE_URL is migrated and its event tables are TRUNCATED:
never point it at data you want to keep. Every load loop is bounded in count and time.
This prints figures; it asserts nothing (not a test).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

API = "/rest-api/enterprise-interface/v1.0"
# Short names: 1000 events with 3 property records must fit the 256 KB batch limit.
TYPE_KEY = "buy"
PROPERTIES = (("amt", "number"), ("paid", "boolean"), ("sku", "string"))
CUSTOMERS = 1000
MAX_SECONDS_PER_PHASE = 120


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8201)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--runs", type=int, default=5, help="batch runs (median reported)")
    parser.add_argument("--batches", type=int, default=10, help="1000-event batches per run")
    parser.add_argument("--senders", type=int, default=2, help="concurrent batch senders")
    parser.add_argument("--singles", type=int, default=4000, help="single POSTs in total")
    parser.add_argument("--clients", type=int, default=8, help="concurrent single-POST clients")
    parser.add_argument(
        "--only",
        choices=("all", "singles"),
        default="all",
        help="'singles': only the single-POST phase (no batches, no COPY floor)",
    )
    parser.add_argument("--webhooks", type=int, default=0, help="webhook endpoints to configure")
    parser.add_argument("--workflows", type=int, default=0, help="workflows to configure")
    return parser.parse_args()


# ---------------------------------------------------------------- setup


def setup_database(args: argparse.Namespace) -> str:
    """Migrate, empty the event tables, create the event type, customers and an API key."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ
    )
    import django

    django.setup()
    from django.db import connection

    from customers.models import Customer
    from events_app.models import EventType, PropertyDefinition
    from events_app.services import api_client_create

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE events_app_propertyrecord, events_app_event, customers_customer CASCADE"
        )
    event_type, _ = EventType.objects.get_or_create(key=TYPE_KEY, defaults={"name": "Bench"})
    for property_id, value_type in PROPERTIES:
        PropertyDefinition.objects.update_or_create(
            event_type=event_type, property_id=property_id, defaults={"value_type": value_type}
        )
    Customer.objects.bulk_create([Customer(external_id=f"c{n:04d}") for n in range(CUSTOMERS)])
    client, secret = api_client_create(name=f"bench-{uuid.uuid4().hex[:8]}")
    configure_later_features(args)
    connection.close()
    return "Basic " + base64.b64encode(f"{client.name}:{secret}".encode()).decode()


def configure_later_features(args: argparse.Namespace) -> None:
    """Webhook endpoints and workflows add work per event once they exist."""
    from django.apps import apps

    for option, count, model in (
        ("--webhooks", args.webhooks, "WebhookEndpoint"),
        ("--workflows", args.workflows, "Workflow"),
    ):
        try:
            apps.get_model("automation", model)
        except LookupError:
            print(f"{option} {count}: not configured (automation.{model} does not exist yet)")
            continue
        if count:
            # Fill in when the feature lands: create `count` rows that match the
            # bench events, so their cost shows in the figures below.
            print(f"{option} {count}: not configured (bench setup for {model} not written yet)")
        else:
            print(f"{option} 0: none configured")


def start_gunicorn(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    with socket.socket() as probe:
        # As gunicorn does: connections in TIME_WAIT do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            raise SystemExit(f"port {args.port} is in use; pick another with --port") from None
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "-b",
            f"127.0.0.1:{args.port}",
            "--log-level",
            "warning",
            "project.wsgi",
        ],
        cwd=ROOT,
        env=os.environ,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=1):
                if server.poll() is None:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


# ---------------------------------------------------------------- workload


def event_item(ref: str, n: int) -> dict[str, object]:
    return {
        "event": {
            "event_type": TYPE_KEY,
            "customer_external_id": f"c{n % CUSTOMERS:04d}",
            "external_id": ref,
        },
        "property_records": [
            {"property_id": "amt", "property_value": n % 997 + 0.5},
            {"property_id": "paid", "property_value": n % 2 == 0},
            {"property_id": "sku", "property_value": f"s{n % 50}"},
        ],
    }


def make_batches(prefix: str, count: int) -> list[bytes]:
    bodies = [
        json.dumps(
            {"events": [event_item(f"{prefix}-{b}-{n}", n) for n in range(1000)]},
            separators=(",", ":"),
        ).encode()
        for b in range(count)
    ]
    assert all(len(b) <= 256 * 1024 for b in bodies), max(map(len, bodies))
    return bodies


def post(
    port: int, auth: str, path: str, body: bytes, conn: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    """POST on `conn` (kept open, for keep-alive) or on a new connection closed after."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body, {"Content-Type": "application/json", "Authorization": auth})
    response = conn.getresponse()
    payload = response.read()
    if own or response.will_close:
        conn.close()
    return response.status, payload


def send_batches(port: int, auth: str, bodies: list[bytes], senders: int) -> tuple[float, dict]:
    """Send `bodies` from `senders` threads; return the wall time and result counts."""
    from concurrent.futures import ThreadPoolExecutor

    counts = {"valid": 0, "invalid": 0}
    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        for status, payload in pool.map(
            lambda b: post(port, auth, f"{API}/events/batch", b), bodies
        ):
            if status != 200:
                raise SystemExit(f"batch failed: {status} {payload[:300]!r}")
            data = json.loads(payload)["data"]
            counts["valid"] += len(data["valid_events"])
            counts["invalid"] += len(data["invalid_events"])
    return time.perf_counter() - started, counts


def single_client(
    job: tuple[int, str, str, int, float, bool],
) -> tuple[float, float, list[float]]:
    """One client process: `count` sequential POSTs (new refs), bounded by `deadline`."""
    port, auth, prefix, count, deadline, keep_alive = job
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60) if keep_alive else None
    latencies: list[float] = []
    first = time.time()
    for n in range(count):
        if time.time() > deadline:
            break
        body = json.dumps(event_item(f"{prefix}-{n}", n), separators=(",", ":")).encode()
        started = time.perf_counter()
        status, payload = post(port, auth, f"{API}/events", body, conn)
        latencies.append(time.perf_counter() - started)
        if status != 201:
            raise SystemExit(f"single POST failed: {status} {payload[:300]!r}")
    return first, time.time(), latencies


def copy_floor(bodies: list[bytes]) -> tuple[float, float]:
    """psycopg COPY of the same rows (events + property records) into the same tables."""
    import psycopg
    from django.db import connection

    from customers.models import Customer
    from events_app.models import EventType
    from project.ids import new_public_id

    type_id = EventType.objects.get(key=TYPE_KEY).id
    customers = dict(Customer.objects.values_list("external_id", "id"))
    connection.close()
    rows: list[tuple] = []
    records: list[tuple] = []
    now = datetime.now(UTC).isoformat()
    for body in bodies:
        for item in json.loads(body)["events"]:
            event = item["event"]
            event_id = new_public_id()
            rows.append(
                (
                    event_id,
                    type_id,
                    customers[event["customer_external_id"]],
                    "copy-" + event["external_id"],
                    "{}",
                    now,
                    now,
                )
            )
            for record in item["property_records"]:
                records.append((event_id, record["property_id"], str(record["property_value"])))

    # Rows formatted as COPY text before the clock starts: the floor is the
    # database's cost, not Python's. One COPY pair and commit per 1000 events.
    def copy_text(lines: list[tuple]) -> bytes:
        return "".join("\t".join(map(str, line)) + "\n" for line in lines).encode()

    chunks = [
        (
            copy_text([(*row, 1, "t", "f", 0) for row in rows[start : start + 1000]]),
            copy_text(records[start * 3 : (start + 1000) * 3]),
        )
        for start in range(0, len(rows), 1000)
    ]
    with psycopg.connect(dsn()) as conn:
        backend_cpu = cpu_seconds(conn.info.backend_pid)
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for event_text, record_text in chunks:
                with cursor.copy(
                    "COPY events_app_event (id, event_type_id, customer_id, external_id, data, "
                    "occurred_at, created_at, state, is_delivered, automation_pending, depth) "
                    "FROM STDIN"
                ) as copy:
                    copy.write(event_text)
                with cursor.copy(
                    "COPY events_app_propertyrecord (event_id, property_id, property_value) "
                    "FROM STDIN"
                ) as copy:
                    copy.write(record_text)
                conn.commit()
        elapsed = time.perf_counter() - started
        backend_cpu = cpu_seconds(conn.info.backend_pid) - backend_cpu
    return len(rows) / elapsed, backend_cpu


# ---------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class ServerCpu:
    """CPU used by gunicorn's workers and by the database backends serving them.

    Wall-clock rates swing with whatever else runs on shared CPUs; CPU time per
    event is steadier, and says how many cores a target rate needs.
    """

    def __init__(self, gunicorn_pid: int) -> None:
        self.gunicorn_pid = gunicorn_pid

    def _workers(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.gunicorn_pid:
                    pids.append(int(entry.name))
        return pids

    def _backends(self) -> list[int]:
        import psycopg

        with psycopg.connect(dsn()) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [row[0] for row in rows]

    def snapshot(self) -> tuple[dict[int, float], dict[int, float]]:
        return (
            {pid: cpu_seconds(pid) for pid in self._workers()},
            {pid: cpu_seconds(pid) for pid in self._backends()},
        )

    def since(self, before: tuple[dict[int, float], dict[int, float]]) -> tuple[float, float]:
        """(gunicorn seconds, postgres seconds) used since `before`."""
        after = self.snapshot()
        return tuple(  # type: ignore[return-value]
            sum(now - then.get(pid, 0.0) for pid, now in current.items())
            for current, then in zip(after, before, strict=True)
        )


def dsn() -> str:
    from django.db import connection

    settings = connection.settings_dict
    return (
        f"host={settings['HOST']} port={settings['PORT'] or 5432} "
        f"dbname={settings['NAME']} user={settings['USER']}"
        + (f" password={settings['PASSWORD']}" if settings["PASSWORD"] else "")
    )


def cpu_note(cpu: tuple[float, float], units: float, per: str, scale: float) -> str:
    gunicorn, postgres = cpu
    return (
        f"server CPU {(gunicorn + postgres) / units * scale:,.0f} {per} "
        f"(gunicorn {gunicorn / units * scale:,.0f}, postgres {postgres / units * scale:,.0f})"
    )


# ---------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    if "DATABASE_URL" not in os.environ or "postgres" not in os.environ["DATABASE_URL"]:
        raise SystemExit("Set DATABASE_URL to a scratch PostgreSQL database (it is truncated).")
    print(
        f"Herald ingest benchmark: gunicorn {args.workers} {args.worker_class} workers "
        f"x {args.threads} threads on 127.0.0.1:{args.port}, "
        f"PostgreSQL {os.environ['DATABASE_URL'].rsplit('/', 1)[-1]}, {os.cpu_count()} CPUs "
        f"(server, database and clients share them)"
    )
    auth = setup_database(args)
    server = start_gunicorn(args)
    try:
        run_phases(args, auth, ServerCpu(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=20)


def run_phases(args: argparse.Namespace, auth: str, cpu: ServerCpu) -> None:
    tag = uuid.uuid4().hex[:6]
    # Warm up the workers (connections, first-request work): 3 batches per worker.
    send_batches(args.port, auth, make_batches(f"warm-{tag}", 3 * args.workers), args.workers)
    if args.only == "singles":
        run_singles(args, auth, cpu, tag)
        return

    rates: list[float] = []
    all_bodies: list[bytes] = []
    before = cpu.snapshot()
    for run in range(args.runs):
        bodies = make_batches(f"{tag}-r{run}", args.batches)
        elapsed, counts = send_batches(args.port, auth, bodies, args.senders)
        assert counts["valid"] == 1000 * args.batches, counts
        rates.append(counts["valid"] / elapsed)
        all_bodies += bodies
    batch_rate = statistics.median(rates)
    print(
        f"batch ingest, {args.batches} x 1000 events x 3 property records, new refs, "
        f"{args.senders} senders: median {batch_rate:,.0f} events/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
        + cpu_note(cpu.since(before), len(all_bodies), "ms per 1000 events", 1000)
    )

    replay = all_bodies[: args.batches]
    before = cpu.snapshot()
    elapsed, counts = send_batches(args.port, auth, replay, args.senders)
    assert counts["invalid"] == 1000 * len(replay), counts
    assert counts["valid"] == 0, counts
    print(
        f"batch replay, {len(replay)} x 1000 events, all duplicate refs: "
        f"{counts['invalid'] / elapsed:,.0f} events/s (0 stored); "
        + cpu_note(cpu.since(before), len(replay), "ms per 1000 events", 1000)
    )

    run_singles(args, auth, cpu, tag)

    floor, copy_cpu = copy_floor(all_bodies[: args.batches])
    print(
        f"raw floor, psycopg COPY of the same rows ({args.batches} x 1000 events + records): "
        f"{floor:,.0f} events/s, postgres CPU {copy_cpu / args.batches * 1000:,.0f} ms per "
        f"1000 events; Herald batch / COPY = {batch_rate / floor:.0%}"
    )


def run_singles(args: argparse.Namespace, auth: str, cpu: ServerCpu, tag: str) -> None:
    per_client = max(1, args.singles // args.clients)
    deadline = time.time() + MAX_SECONDS_PER_PHASE
    keep_alive = args.worker_class != "sync"  # sync workers close every connection
    jobs = [
        (args.port, auth, f"s-{tag}-{c}", per_client, deadline, keep_alive)
        for c in range(args.clients)
    ]
    with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
        before = cpu.snapshot()
        results = pool.map(single_client, jobs)
        used = cpu.since(before)
    # Wall time from the first request to the last (process start-up excluded).
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"single POST /events, {len(latencies)} requests from {args.clients} clients"
        f"{' (keep-alive)' if keep_alive else ''}: "
        f"{len(latencies) / elapsed:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        + cpu_note(used, len(latencies), "µs per request", 1_000_000)
    )


if __name__ == "__main__":
    main()
