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
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from customers.models import Customer
from events_app.generation import (
    COUNTRIES,
    CUSTOMERS_PER_EVENT,
    DEFAULT_CHUNK,
    GENERATED_TYPES,
    GeneratedEvent,
    Generator,
    ensure_event_types,
    iso_millis,
    public_id_at,
    run_tag,
)
from events_app.models import Event, PropertyRecord
from events_app.partitions.maintenance import partitions_ensure

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
            record_lines.extend(f"{e.id}\t{pid}\t{value}\t{created}\n" for pid, value in e.records)
        return event_lines, record_lines

    def write(self, prepared: tuple[list[str], list[str]]) -> None:
        event_lines, record_lines = prepared
        event_table = Event._meta.db_table
        record_table = PropertyRecord._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {event_table} ({self.EVENT_COLUMNS}) FROM STDIN") as copy:
                _write_blocks(copy, event_lines)
            records_sql = (
                f"COPY {record_table} (event_id, property_id, property_value, created_at) "
                "FROM STDIN"
            )
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
                PropertyRecord(
                    event_id=e.id, property_id=pid, property_value=value, created_at=created
                )
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

        # The months the events span get their partitions (PostgreSQL) before the COPY.
        partitions_ensure(
            now=datetime.fromtimestamp(end_ms / 1000, tz=UTC),
            since=datetime.fromtimestamp(start_ms / 1000, tz=UTC),
        )
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
