"""Ingestion benchmark: Herald under gunicorn against PostgreSQL, and the raw COPY floor.

    [DATABASE_URL=postgres://postgres@127.0.0.1:5432/herald_bench_ingest] \
        .venv/bin/python bench/ingest.py [--port 8201] [--workers 4] [--runs 5]

Prints, in one run:
  * batch ingestion over HTTP (1000-event batches, 3 property records each, new refs):
    events/s, median of --runs runs;
  * the same batches replayed (every event a duplicate ref): events/s;
  * single POST /events from --clients concurrent client processes: requests/s, p50/p99;
  * the single-POST floor: the same requests against bench/ingest_floor_app.py (a bare
    WSGI app, one prepared INSERT into the same tables, no Django) under the same
    gunicorn, on --port + 2: what this machine can serve at best, and Herald / floor;
  * the raw floor: psycopg COPY of the same rows into the same tables, events/s, and
    the ratio Herald / COPY.
With --webhooks N / --workflows N (e.g. 2 and 10), batch ingestion and single POSTs are
measured again after configuring N active webhook subscriptions (to a local receiver on
--port + 1) and N active workflows on the bench's event type, and both figures are
printed with their ratios to the figures without. Their wake-ups are enqueued on Redis
(--redis-db: use a db of your own; its default queue and the wake-up keys are emptied at
the end) and not run: the figures are the cost ingestion pays for them (flags, wake-ups),
not the background work itself. --only singles runs just the single-POST phases.

The database named by DATABASE_URL (created if missing) is migrated and its event
tables are TRUNCATED:
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
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from common import scratch_database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

API = "/rest-api/enterprise-interface/v1.0"
# Short names: 1000 events with 3 property records must fit the 256 KB batch limit.
TYPE_KEY = "buy"
PROPERTIES = (("amt", "number"), ("paid", "boolean"), ("sku", "string"))
CUSTOMERS = 1000
MAX_SECONDS_PER_PHASE = 120
# The ratios of this run against their goals, printed together at the end:
# (what, ratio, goal).
RATIOS: list[tuple[str, float, float]] = []


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
    parser.add_argument("--redis-db", type=int, default=10, help="broker for enqueued work")
    parser.add_argument(
        "--claim-every-ms",
        type=float,
        default=0,
        help="with automation: give the wake-up back every this many ms, as a claimer "
        "that finds nothing to do does (0: never, as one draining a steady load)",
    )
    args = parser.parse_args()
    # Set before Django loads: gunicorn and this process publish to Redis (without a
    # broker a PostgreSQL server would run deliveries and evaluations inline, in the
    # request), and webhook URLs on 127.0.0.1 must pass the outbound guard.
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:6379/{args.redis_db}"
    os.environ.setdefault("HERALD_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8")
    # Every request is still counted (one Redis script, as in production), but a run
    # sends more than the default ingest budget per minute: it must never answer 429.
    os.environ.setdefault("HERALD_RATE_LIMIT_INGEST", "1000000000")
    return args


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
    from events_app.api_clients import api_client_create
    from events_app.models import EventType, PropertyDefinition

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
    clear_later_features()
    connection.close()
    return "Basic " + base64.b64encode(f"{client.name}:{secret}".encode()).decode()


def bench_workflow(n: int) -> dict[str, object]:
    """Ten kinds of selective trees over the bench events (property, event, customer
    leaves, a regex) -- number 3 carries the frequency condition."""
    trees: list[dict[str, object]] = [
        {"property": "amt", "op": "gte", "value": 990},
        {
            "all": [
                {"property": "paid", "op": "eq", "value": True},
                {"property": "amt", "op": "lt", "value": 5},
            ]
        },
        {"property": "sku", "op": "matches", "value": "^s4[0-9]$"},
        {
            "all": [
                {"count": {"event_type": TYPE_KEY, "within": "P7D"}, "op": "gte", "value": 3},
                {"property": "amt", "op": "between", "value": [100, 101]},
            ]
        },
        {"event": "external_id", "op": "ends_with", "value": "-999"},
        {"customer": "external_id", "op": "eq", "value": "c0001"},
        {
            "any": [
                {"property": "sku", "op": "eq", "value": "s7"},
                {"property": "amt", "op": "eq", "value": 7.5},
            ]
        },
        {"not": {"property": "paid", "op": "exists"}},
        {"event": "occurred_at", "op": "within_last", "value": "PT1M"},
        {"customer": "tags", "op": "contains", "value": "vip"},
    ]
    return trees[n % len(trees)]


def configure_later_features(args: argparse.Namespace, receiver_port: int) -> None:
    """--webhooks active subscriptions (all event types) to the local receiver, and
    --workflows active workflows triggering on the bench's event type."""
    from automation.webhooks.services import endpoint_create
    from automation.workflows.services import WorkflowInput, workflow_create

    for n in range(args.webhooks):
        endpoint_create(url=f"http://127.0.0.1:{receiver_port}/hook/{n}", description="bench")
    for n in range(args.workflows):
        workflow_create(
            data=WorkflowInput(
                name=f"bench-{uuid.uuid4().hex[:6]}-{n}",
                trigger_event_types=[TYPE_KEY],
                conditions=bench_workflow(n),
                actions=[{"type": "add_tags", "tags": [f"wf{n}"]}],
                active=True,
            )
        )


def clear_later_features() -> None:
    from automation.webhooks.models import Endpoint
    from automation.workflows.models import Workflow

    Workflow.objects.all().delete()
    Endpoint.objects.all().delete()


class Receiver:
    """A fast local webhook receiver (204 to every POST) in a thread of this process."""

    def __init__(self, port: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


QUEUE_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's priority lists


def purge_queue() -> None:
    """Drop the messages this run enqueued on its Redis db (nobody consumes them) and
    the wake-up keys."""
    from project.celery import all_queues, app

    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        for queue in all_queues():
            for suffix in QUEUE_SUFFIXES:
                client.delete(queue + suffix)
        for key in client.scan_iter(match="herald:wake:*"):
            client.delete(key)


class StandInClaimer:
    """What a claimer does to the wake-up (automation.due.due_events_drain): give it
    back (project.background.wake_taken) every `every` seconds, as one that keeps
    finding nothing to do would, so requests publish again (no claim runs: the figures
    are ingestion's cost); `every` 0: never, as one draining a steady load. Counts the
    wake-up messages published meanwhile."""

    def __init__(self, every: float) -> None:
        from project.celery import app

        self.app = app
        self.every = every
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.app.conf.broker_url)

    def queued(self) -> int:
        from project.celery import all_queues

        client = self._client()
        return sum(
            client.llen(queue + suffix) for queue in all_queues() for suffix in QUEUE_SUFFIXES
        )

    def _loop(self) -> None:
        client = self._client()
        while not self.stop_event.wait(self.every):
            for key in client.scan_iter(match="herald:wake:*"):
                client.delete(key)

    def __enter__(self) -> StandInClaimer:
        self.before = self.queued()
        if self.every > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        if self.every > 0:
            self.thread.join()
        self.published = self.queued() - self.before


def start_gunicorn(
    args: argparse.Namespace, port: int, app: str = "project.wsgi"
) -> subprocess.Popen[bytes]:
    with socket.socket() as probe:
        # As gunicorn does: connections in TIME_WAIT do not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"port {port} is in use; pick another with --port") from None
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
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=os.environ,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
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


class RawClient:
    """A minimal HTTP/1.1 client on one socket: the bench's clients share the server's
    cores, and http.client (header parsing, buffering) cost ~0.3 ms of CPU per request,
    a fifth of the figure being measured. Requests are built before the clock starts."""

    def __init__(self, port: int, keep_alive: bool) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.sock: socket.socket | None = None
        self.buffer = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(b":", 1) for line in lines[1:])
        length = int(headers.get(b"content-length", b"0"))
        while len(rest) < length:
            rest += self._recv()
        body, self.buffer = rest[:length], rest[length:]
        if not self.keep_alive or headers.get(b"connection", b"").strip() == b"close":
            self.sock.close()
            self.sock = None
        return status, body

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk


def single_client(
    job: tuple[int, str, str, int, float, bool],
) -> tuple[float, float, list[float]]:
    """One client process: `count` sequential POSTs (new refs), bounded by `deadline`."""
    port, auth, prefix, count, deadline, keep_alive = job
    client = RawClient(port, keep_alive)
    requests = []
    for n in range(count):
        body = json.dumps(event_item(f"{prefix}-{n}", n), separators=(",", ":")).encode()
        requests.append(
            (
                f"POST {API}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nAuthorization: {auth}\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
            ).encode()
            + body
        )
    latencies: list[float] = []
    first = time.time()
    for raw in requests:
        if time.time() > deadline:
            break
        started = time.perf_counter()
        status, payload = client.request(raw)
        latencies.append(time.perf_counter() - started)
        if status != 201:
            # Not SystemExit: it would end this pool process without an answer, and the
            # parent's Pool.map would wait for it forever.
            raise RuntimeError(f"single POST failed: {status} {payload[:300]!r}")
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
                records.append(
                    (event_id, record["property_id"], str(record["property_value"]), now)
                )

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
                    "COPY events_app_propertyrecord (event_id, property_id, property_value, "
                    "created_at) FROM STDIN"
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


def child_pids(parent: int) -> list[int]:
    """The live processes whose parent is `parent`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                pids.append(int(entry.name))
    return pids


class ServerCpu:
    """CPU used by gunicorn's workers and by the database backends serving them.

    Wall-clock rates swing with whatever else runs on shared CPUs; CPU time per
    event is steadier, and says how many cores a target rate needs.
    """

    def __init__(self, gunicorn_pid: int) -> None:
        self.gunicorn_pid = gunicorn_pid

    def _workers(self) -> list[int]:
        return child_pids(self.gunicorn_pid)

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
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    scratch_database("herald_bench_ingest")
    print(
        f"Herald ingest benchmark: gunicorn {args.workers} {args.worker_class} workers "
        f"x {args.threads} threads on 127.0.0.1:{args.port}, "
        f"PostgreSQL {os.environ['DATABASE_URL'].rsplit('/', 1)[-1]}, {os.cpu_count()} CPUs "
        f"(server, database and clients share them)"
    )
    auth = setup_database(args)
    server = start_gunicorn(args, args.port)
    receiver = Receiver(args.port + 1) if args.webhooks else None
    try:
        run_phases(args, auth, ServerCpu(server.pid))
        print_ratios()
    finally:
        server.terminate()
        server.wait(timeout=20)
        if receiver is not None:
            receiver.stop()
        purge_queue()


def measure_batches(
    args: argparse.Namespace, auth: str, cpu: ServerCpu, tag: str, label: str
) -> tuple[float, list[bytes]]:
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
        f"batch ingest{label}, {args.batches} x 1000 events x 3 property records, new refs, "
        f"{args.senders} senders: median {batch_rate:,.0f} events/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}); "
        + cpu_note(cpu.since(before), len(all_bodies), "ms per 1000 events", 1000)
    )
    return batch_rate, all_bodies


def measure_singles(
    args: argparse.Namespace,
    auth: str,
    cpu: ServerCpu,
    tag: str,
    label: str,
    port: int | None = None,
    what: str = "single POST /events",
) -> tuple[float, float]:
    """Single POSTs from --clients processes against `port` (Herald's by default);
    prints and returns requests/s and server CPU seconds per request."""
    per_client = max(1, args.singles // args.clients)
    deadline = time.time() + MAX_SECONDS_PER_PHASE
    keep_alive = args.worker_class != "sync"  # sync workers close every connection
    jobs = [
        (port or args.port, auth, f"s-{tag}-{c}", per_client, deadline, keep_alive)
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
    rate = len(latencies) / elapsed
    print(
        f"{what}{label}, {len(latencies)} requests from {args.clients} clients"
        f"{' (keep-alive)' if keep_alive else ''}: "
        f"{rate:,.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        + cpu_note(used, len(latencies), "µs per request", 1_000_000)
    )
    return rate, sum(used) / len(latencies)


def measure_floor(args: argparse.Namespace, tag: str, herald: tuple[float, float]) -> None:
    """The same single POSTs against bench/ingest_floor_app.py (one prepared INSERT into
    the same tables, no Django) under the same gunicorn: this machine's ceiling."""
    port = args.port + 2
    server = start_gunicorn(args, port, "bench.ingest_floor_app:application")
    try:
        cpu = ServerCpu(server.pid)
        jobs = [(port, "", f"fw-{tag}-{c}", 50, time.time() + 60, False) for c in range(4)]
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            pool.map(single_client, jobs)  # warm-up: connections, prepared statement
        floor, floor_cpu = measure_singles(
            args, "", cpu, f"floor-{tag}", "", port, "single POST floor (bare WSGI app, one INSERT)"
        )
    finally:
        server.terminate()
        server.wait(timeout=20)
    herald_rate, herald_cpu = herald
    print(
        f"   Herald single POST / floor = {herald_rate / floor:.0%} "
        f"(by server CPU per request, floor / Herald: {floor_cpu / herald_cpu:.0%})"
    )
    RATIOS.append(("single POST without automation / bare-WSGI floor", herald_rate / floor, 0.70))


def run_phases(args: argparse.Namespace, auth: str, cpu: ServerCpu) -> None:
    tag = uuid.uuid4().hex[:6]
    # Warm up the workers (connections, first-request work): 3 batches per worker.
    send_batches(args.port, auth, make_batches(f"warm-{tag}", 3 * args.workers), args.workers)
    if args.only == "singles":
        single = measure_singles(args, auth, cpu, tag, "")
        measure_floor(args, tag, single)
        if args.webhooks or args.workflows:
            measure_with_automation(args, auth, cpu, tag, None, single)
        return

    print("-- no webhook endpoints, no workflows:")
    batch_rate, all_bodies = measure_batches(args, auth, cpu, tag, "")

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

    single = measure_singles(args, auth, cpu, tag, "")
    measure_floor(args, tag, single)

    floor, copy_cpu = copy_floor(all_bodies[: args.batches])
    print(
        f"raw floor, psycopg COPY of the same rows ({args.batches} x 1000 events + records): "
        f"{floor:,.0f} events/s, postgres CPU {copy_cpu / args.batches * 1000:,.0f} ms per "
        f"1000 events; Herald batch / COPY = {batch_rate / floor:.0%}"
    )
    RATIOS.append(("batch without automation / COPY", batch_rate / floor, 0.60))

    if args.webhooks or args.workflows:
        measure_with_automation(args, auth, cpu, tag, batch_rate, single)


def measure_with_automation(
    args: argparse.Namespace,
    auth: str,
    cpu: ServerCpu,
    tag: str,
    batch_rate: float | None,
    single: tuple[float, float],
) -> None:
    """Batches (unless `batch_rate` is None: --only singles) and single POSTs again with
    --webhooks and --workflows configured; prints the ratios to the figures without."""
    configure_later_features(args, args.port + 1)
    from django.db import connection

    connection.close()
    label = f" [{args.webhooks} webhooks, {args.workflows} workflows]"
    print(
        f"-- with {args.webhooks} active webhook endpoints (every event type) and "
        f"{args.workflows} active workflows on '{TYPE_KEY}'; their due work flagged and "
        "wake-ups enqueued on Redis, not run:"
    )
    if batch_rate is not None:
        with StandInClaimer(args.claim_every_ms / 1000) as claimer:
            with_rate, _ = measure_batches(args, auth, cpu, f"{tag}-wh", label)
        print(
            f"   batch ingest with / without: {with_rate / batch_rate:.0%} "
            f"({claimer.published} wake-ups published)"
        )
        RATIOS.append(("batch with automation / without", with_rate / batch_rate, 0.70))
    with StandInClaimer(args.claim_every_ms / 1000) as claimer:
        with_single, with_cpu = measure_singles(args, auth, cpu, f"{tag}-wh", label)
    single_rate, single_cpu = single
    print(
        f"   single POST with / without: {with_single / single_rate:.0%} "
        f"(by server CPU per request, without / with: {single_cpu / with_cpu:.0%}; "
        f"{claimer.published} wake-ups published; the wake-up given back "
        + (f"every {args.claim_every_ms:g} ms)" if args.claim_every_ms > 0 else "never)")
    )
    RATIOS.append(("single POST with automation / without", with_single / single_rate, 0.70))


def print_ratios() -> None:
    """The run's ratios together, each against its goal (wall-clock rates of this run)."""
    if not RATIOS:
        return
    print("-- ratios of this run (goal in brackets):")
    for what, ratio, goal in RATIOS:
        verdict = "met" if ratio >= goal else "NOT met"
        print(f"   {what}: {ratio:.0%} (>= {goal:.0%}: {verdict})")


if __name__ == "__main__":
    main()
