"""`manage.py generate_events --events N`: realistic synthetic data, fast.

Event types (the demo types of seed_demo, with a few more optional
properties so that events carry about three property records), customers
(N/20 by default) and N events spread over the last months, in time order,
with property records that are valid against their type's definitions.

PostgreSQL: rows are streamed with COPY (psycopg 3 `cursor.copy`), one
transaction per chunk, so the counters, indexes and constraints are
maintained exactly as for any other write. SQLite: batched INSERTs (slower,
same data). Running it again adds more data: external ids carry a run tag.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from customers.models import Customer
from events_app.demo import DEMO_TYPES
from events_app.event_types import PropertyDefinitionInput, event_type_create
from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord

# seed_demo's types, plus optional properties so an event carries ~3 records.
EXTRA_PROPERTIES: dict[str, list[tuple[str, str, bool]]] = {
    "purchase": [("items", "number", False)],
    "login": [("device", "string", False), ("success", "boolean", False)],
    "api_call": [("status_code", "number", False)],
    "signup": [("referrer", "string", False)],
}
GENERATED_TYPES = [
    (key, name, [*props, *EXTRA_PROPERTIES.get(key, [])]) for key, name, props in DEMO_TYPES
]
# How often each type occurs (seed_demo's weights); generated extra types weigh 2.
TYPE_WEIGHTS = {"purchase": 3, "login": 5, "api_call": 8, "signup": 1}
# Types beyond the demo ones get these definitions.
CUSTOM_PROPERTIES = [
    ("label", "string", True),
    ("value", "number", False),
    ("flag", "boolean", False),
]
EXTERNAL_ID_PREFIX = {"purchase": "ORD", "login": "LGN", "api_call": "REQ", "signup": "SGN"}
OPTIONAL_PROPERTY_RATE = 0.9

CHANNELS = ("web", "web", "web", "ios", "android")
CAMPAIGNS = ("spring_sale", "newsletter", "retargeting", "organic", "partner")
COUNTRIES = ("CZ", "DE", "US", "GB", "FR", "PL", "SK", "AT")
# Realistic values for the known property ids; others get a value of their type.
STRING_VALUES: dict[str, tuple[str, ...]] = {
    "currency": ("EUR", "USD", "CZK", "GBP"),
    "method": ("password", "sso", "magic_link"),
    "api_url": ("/v1/orders", "/v1/users", "/v1/search", "/v1/carts", "/v1/payments"),
    "plan": ("free", "pro", "team"),
    "device": ("desktop", "mobile", "tablet"),
    "referrer": ("google", "facebook", "newsletter", "direct", "partner"),
}
GENERIC_STRINGS = ("alpha", "beta", "gamma", "delta", "omega")
STATUS_CODES = ("200", "200", "200", "201", "204", "400", "404", "500")

DEFAULT_CHUNK = 20_000
CUSTOMERS_PER_EVENT = 20


@dataclass(frozen=True)
class TypePlan:
    """One event type as the generator needs it: id, weight, definitions."""

    id: str
    key: str
    weight: int
    prefix: str
    definitions: list[tuple[str, str, bool]]


@dataclass(slots=True)
class GeneratedEvent:
    id: str
    event_type_id: str
    customer_id: str
    external_id: str
    secondary_external_id: str | None
    data: str
    occurred_ms: int
    created_ms: int
    state: int
    records: list[tuple[str, str]] = field(default_factory=list)


def public_id_at(millis: int, rng: random.Random) -> str:
    """project.ids.new_public_id for a given time: 12 hex of millis, 14 random hex."""
    return f"{millis:012x}{rng.getrandbits(56):014x}"


def run_tag() -> str:
    """Base-36 milliseconds: makes this run's external ids unique against earlier runs."""
    millis = time.time_ns() // 1_000_000
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while millis:
        millis, rest = divmod(millis, 36)
        out = digits[rest] + out
    return out


def iso_millis(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


class Generator:
    """Produces time-ordered events with property records valid for their type."""

    def __init__(
        self,
        *,
        rng: random.Random,
        types: list[TypePlan],
        customer_ids: list[str],
        start_ms: int,
        end_ms: int,
        tag: str,
    ) -> None:
        self.rng = rng
        self.types = types
        self.weights = [t.weight for t in types]
        self.customer_ids = customer_ids
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.tag = tag
        self.sequence = dict.fromkeys((t.id for t in types), 0)

    def events(self, total: int, chunk: int) -> Iterator[list[GeneratedEvent]]:
        """Chunks of events; each chunk covers its own slice of the time range."""
        span = self.end_ms - self.start_ms
        for first in range(0, total, chunk):
            size = min(chunk, total - first)
            lo = self.start_ms + span * first // total
            hi = self.start_ms + span * (first + size) // total
            moments = sorted(self.rng.randint(lo, max(lo, hi - 1)) for _ in range(size))
            picks = self.rng.choices(self.types, weights=self.weights, k=size)
            # Ids are generated in time order; equal milliseconds get sorted
            # random tails, so id order == created_at order, as with new_public_id.
            ids = [public_id_at(ms, self.rng) for ms in moments]
            ids.sort()
            yield [self._event(i, ms, t) for i, ms, t in zip(ids, moments, picks, strict=True)]

    def _event(self, event_id: str, created_ms: int, plan: TypePlan) -> GeneratedEvent:
        rng = self.rng
        self.sequence[plan.id] += 1
        seq = self.sequence[plan.id]
        # Power-law activity: a few customers produce many events.
        customer = self.customer_ids[int(len(self.customer_ids) * rng.random() ** 2)]
        roll = rng.random()
        state = 2 if roll < 0.85 else (1 if roll < 0.95 else 3)
        channel = rng.choice(CHANNELS)
        if plan.key == "purchase":
            data = f'{{"channel": "{channel}", "cart_size": {rng.randint(1, 9)}}}'
            secondary = f"cart-{self.tag}-{seq:07d}" if rng.random() < 0.7 else None
        elif plan.key == "api_call":
            data = f'{{"http_method": "{rng.choice(("GET", "GET", "POST", "PUT"))}"}}'
            secondary = None
        else:
            data = f'{{"channel": "{channel}", "campaign": "{rng.choice(CAMPAIGNS)}"}}'
            secondary = None
        return GeneratedEvent(
            id=event_id,
            event_type_id=plan.id,
            customer_id=customer,
            external_id=f"{plan.prefix}-{self.tag}-{seq:07d}",
            secondary_external_id=secondary,
            data=data,
            # The client's clock: up to two minutes before receipt.
            occurred_ms=created_ms - rng.randint(0, 120_000),
            created_ms=created_ms,
            state=state,
            records=self._records(plan, created_ms),
        )

    def _records(self, plan: TypePlan, created_ms: int) -> list[tuple[str, str]]:
        rng = self.rng
        out: list[tuple[str, str]] = []
        for property_id, value_type, required in plan.definitions:
            if not required and rng.random() > OPTIONAL_PROPERTY_RATE:
                continue
            out.append((property_id, self._value(property_id, value_type, created_ms)))
        return out

    def _value(self, property_id: str, value_type: str, created_ms: int) -> str:
        """Canonical text, as PROPERTY_TYPES[value_type].to_text would store it."""
        rng = self.rng
        if value_type == PropertyDefinition.ValueType.NUMBER:
            if property_id == "amount":
                return f"{rng.uniform(5, 500):.2f}"
            if property_id == "status_code":
                return rng.choice(STATUS_CODES)
            if property_id == "processing_duration":
                return str(rng.randint(3, 900))
            return str(rng.randint(1, 20))
        if value_type == PropertyDefinition.ValueType.BOOLEAN:
            if property_id == "has_purchase":
                return "true"
            return "true" if rng.random() < 0.8 else "false"
        if value_type == PropertyDefinition.ValueType.DATETIME:
            moment = datetime.fromtimestamp(created_ms // 1000, tz=UTC) + timedelta(days=14)
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return rng.choice(STRING_VALUES.get(property_id, GENERIC_STRINGS))


def ensure_event_types(count: int) -> list[TypePlan]:
    """The first `count` generated types, created through the service when missing.

    An existing type with the same key is reused with ITS definitions, so the
    generated values stay valid whatever the type declares.
    """
    wanted = GENERATED_TYPES[:count]
    for n in range(len(GENERATED_TYPES), count):
        wanted.append((f"generated_{n + 1:02d}", f"Generated {n + 1}", CUSTOM_PROPERTIES))
    plans: list[TypePlan] = []
    for key, name, props in wanted:
        event_type = EventType.objects.filter(key=key).first()
        if event_type is None:
            event_type = event_type_create(
                key=key,
                name=name,
                properties=[
                    PropertyDefinitionInput(
                        property_id=p, name=p.replace("_", " "), type=t, required=r
                    )
                    for p, t, r in props
                ],
            )
        definitions = list(
            PropertyDefinition.objects.filter(event_type=event_type)
            .order_by("property_id")
            .values_list("property_id", "value_type", "required")
        )
        plans.append(
            TypePlan(
                id=event_type.id,
                key=key,
                weight=TYPE_WEIGHTS.get(key, 2),
                prefix=EXTERNAL_ID_PREFIX.get(key, key.upper()[:3]),
                definitions=definitions,
            )
        )
    return plans


# ---------------------------------------------------------------- writers


NULL = "\\N"  # COPY text format's NULL


def _text(value: object) -> str:
    r"""One COPY text-format field. Generated values never contain \t, \n or \\."""
    return NULL if value is None else str(value)


class CopyWriter:
    """PostgreSQL: COPY in text format, one transaction per chunk."""

    EVENT_COLUMNS = (
        "id, event_type_id, customer_id, external_id, secondary_external_id, data, "
        "occurred_at, created_at, state, completed_at, failed_at, is_delivered, "
        "automation_pending, depth"
    )

    def customers(self, rows: list[tuple[str, str, str, str, int]]) -> None:
        table = Customer._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            sql = (
                f"COPY {table} (id, external_id, email, attributes, tags, created_at, updated_at) "
                "FROM STDIN"
            )
            with raw.copy(sql) as copy:
                for cid, external_id, email, attributes, created_ms in rows:
                    at = iso_millis(created_ms)
                    copy.write(f"{cid}\t{external_id}\t{email}\t{attributes}\t[]\t{at}\t{at}\n")

    def prepare(self, chunk: list[GeneratedEvent]) -> tuple[list[str], list[str]]:
        """COPY text lines of the events and of their property records (no I/O)."""
        event_lines: list[str] = []
        record_lines: list[str] = []
        for e in chunk:
            created = iso_millis(e.created_ms)
            done = iso_millis(e.created_ms + 250)
            event_lines.append(
                f"{e.id}\t{e.event_type_id}\t{e.customer_id}\t{e.external_id}\t"
                f"{_text(e.secondary_external_id)}\t{e.data}\t{iso_millis(e.occurred_ms)}\t"
                f"{created}\t{e.state}\t{done if e.state == 2 else NULL}\t"
                f"{done if e.state == 3 else NULL}\tt\tf\t0\n"
            )
            record_lines.extend(f"{e.id}\t{pid}\t{value}\n" for pid, value in e.records)
        return event_lines, record_lines

    def write(self, prepared: tuple[list[str], list[str]]) -> None:
        event_lines, record_lines = prepared
        event_table = Event._meta.db_table
        record_table = PropertyRecord._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {event_table} ({self.EVENT_COLUMNS}) FROM STDIN") as copy:
                _write_blocks(copy, event_lines)
            records_sql = f"COPY {record_table} (event_id, property_id, property_value) FROM STDIN"
            with raw.copy(records_sql) as copy:
                _write_blocks(copy, record_lines)


def _write_blocks(copy: Any, lines: list[str], block: int = 2000) -> None:
    for start in range(0, len(lines), block):
        copy.write("".join(lines[start : start + block]))


class InsertWriter:
    """Any database (the SQLite fallback): bulk_create in batches, one transaction per chunk."""

    BATCH = 500

    def customers(self, rows: list[tuple[str, str, str, str, int]]) -> None:
        objects = [
            Customer(id=cid, external_id=ext, email=email, attributes=json.loads(attributes))
            for cid, ext, email, attributes, _ in rows
        ]
        with transaction.atomic():
            Customer.objects.bulk_create(objects, batch_size=self.BATCH)
            # auto_now_add ignores given values; set the generated creation times.
            for cid, _, _, _, created_ms in rows:
                at = datetime.fromtimestamp(created_ms / 1000, tz=UTC)
                Customer.objects.filter(pk=cid).update(created_at=at, updated_at=at)

    def prepare(self, chunk: list[GeneratedEvent]) -> tuple[list[Event], list[PropertyRecord]]:
        """Unsaved model instances of the events and their property records (no I/O)."""
        events: list[Event] = []
        records: list[PropertyRecord] = []
        for e in chunk:
            created = datetime.fromtimestamp(e.created_ms / 1000, tz=UTC)
            done = created + timedelta(milliseconds=250)
            events.append(
                Event(
                    id=e.id,
                    event_type_id=e.event_type_id,
                    customer_id=e.customer_id,
                    external_id=e.external_id,
                    secondary_external_id=e.secondary_external_id,
                    data=json.loads(e.data),
                    occurred_at=datetime.fromtimestamp(e.occurred_ms / 1000, tz=UTC),
                    created_at=created,
                    state=e.state,
                    completed_at=done if e.state == 2 else None,
                    failed_at=done if e.state == 3 else None,
                )
            )
            records.extend(
                PropertyRecord(event_id=e.id, property_id=pid, property_value=value)
                for pid, value in e.records
            )
        return events, records

    def write(self, prepared: tuple[list[Event], list[PropertyRecord]]) -> None:
        events, records = prepared
        with transaction.atomic():
            Event.objects.bulk_create(events, batch_size=self.BATCH)
            PropertyRecord.objects.bulk_create(records, batch_size=self.BATCH)


Writer = CopyWriter | InsertWriter


def _prepared_chunks(generator: Generator, writer: Writer, total: int, chunk: int) -> Iterator[Any]:
    """Chunks ready to write, generated in a thread while the previous one is written.

    Generating and formatting is pure Python; writing mostly waits for the
    database (psycopg releases the GIL meanwhile), so the two overlap. All
    database work stays on this thread and its connection.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    finished = object()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for events in generator.events(total, chunk):
                put(writer.prepare(events))
        except BaseException as exc:  # handed to the consuming thread
            put(exc)
        put(finished)

    thread = threading.Thread(target=produce, name="generate_events", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


# ---------------------------------------------------------------- command


class Command(BaseCommand):
    help = "Fill the database with realistic synthetic events (COPY on PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, required=True, help="How many events.")
        parser.add_argument(
            "--customers", type=int, default=None, help="New customers (default: events / 20)."
        )
        parser.add_argument(
            "--event-types", type=int, default=len(GENERATED_TYPES), help="Event types to use."
        )
        parser.add_argument("--months", type=int, default=6, help="Spread events over N months.")
        parser.add_argument("--seed", type=int, default=None, help="Random seed (reproducible).")
        parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="Events per commit.")
        parser.add_argument(
            "--insert",
            action="store_true",
            help="Use batched INSERTs instead of COPY (automatic when not on PostgreSQL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total: int = options["events"]
        if total < 0 or options["chunk"] < 1 or options["event_types"] < 1:
            raise CommandError("--events must be >= 0, --chunk and --event-types >= 1.")
        n_customers = options["customers"]
        if n_customers is None:
            n_customers = max(1, total // CUSTOMERS_PER_EVENT)
        if n_customers < 1:
            raise CommandError("--customers must be >= 1.")
        use_copy = connection.vendor == "postgresql" and not options["insert"]
        writer: Writer = CopyWriter() if use_copy else InsertWriter()
        rng = random.Random(options["seed"])
        tag = run_tag()
        end_ms = time.time_ns() // 1_000_000
        start_ms = end_ms - options["months"] * 30 * 86_400_000
        began = time.monotonic()

        types = ensure_event_types(options["event_types"])
        customer_ids = self._customers(writer, rng, n_customers, start_ms, tag)
        self.stdout.write(
            f"{len(types)} event types, {n_customers:,} new customers; "
            f"writing {total:,} events with {'COPY' if use_copy else 'batched INSERT'} ..."
        )
        generator = Generator(
            rng=rng,
            types=types,
            customer_ids=customer_ids,
            start_ms=start_ms,
            end_ms=end_ms,
            tag=tag,
        )
        done = records = 0
        for prepared in _prepared_chunks(generator, writer, total, options["chunk"]):
            writer.write(prepared)
            done += len(prepared[0])
            records += len(prepared[1])
            elapsed = time.monotonic() - began
            self.stdout.write(
                f"  {done:>11,} / {total:,} events  {elapsed:7.1f} s  "
                f"{done / max(elapsed, 1e-9):>9,.0f} events/s"
            )
        elapsed = time.monotonic() - began
        self.stdout.write(
            f"Generated {done:,} events, {records:,} property records and "
            f"{n_customers:,} customers in {elapsed:.1f} s "
            f"({done / max(elapsed, 1e-9):,.0f} events/s)."
        )
        if use_copy and not connection.in_atomic_block:
            self._vacuum()

    def _customers(
        self,
        writer: Writer,
        rng: random.Random,
        count: int,
        start_ms: int,
        tag: str,
    ) -> list[str]:
        # Customers sign up during the month before the first generated event.
        moments = sorted(rng.randint(start_ms - 30 * 86_400_000, start_ms) for _ in range(count))
        rows: list[tuple[str, str, str, str, int]] = []
        for n, created_ms in enumerate(moments, start=1):
            external_id = f"{tag}-{n:07d}"
            attributes = json.dumps(
                {"country": rng.choice(COUNTRIES), "newsletter": rng.random() < 0.4}
            )
            email = f"customer.{external_id}@example.com"
            rows.append((public_id_at(created_ms, rng), external_id, email, attributes, created_ms))
        rows.sort()
        for start in range(0, len(rows), DEFAULT_CHUNK):
            writer.customers(rows[start : start + DEFAULT_CHUNK])
        return [row[0] for row in rows]

    def _vacuum(self) -> None:
        """Set the visibility map so list queries can use index-only scans at once."""
        began = time.monotonic()
        with connection.cursor() as cursor:
            for model in (Customer, Event, PropertyRecord):
                cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
        self.stdout.write(f"VACUUM ANALYZE done in {time.monotonic() - began:.1f} s.")
