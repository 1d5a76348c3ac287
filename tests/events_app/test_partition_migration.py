"""The migration that partitions events by month, run on a database with data: back to
the unpartitioned schema, rows written there, forward again, and everything is there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum
from django.utils import timezone

from events_app.models import Event, EventCount, EventRef, PropertyRecord
from events_app.partitions.ddl import is_partitioned
from events_app.partitions.months import EVENT_TABLE, RECORD_TABLE, Month
from events_app.selectors import event_get
from project.ids import new_public_id

pytestmark = pytest.mark.django_db(transaction=True)

UNPARTITIONED = [
    ("events_app", "0008_rate_limit_counter_unlogged"),
    ("automation", "0010_clamp_schedule_end_dates"),
]
NOW = timezone.now()
# Three months with events, one of them long before the migration's months ahead.
MOMENTS = [NOW - timedelta(days=400), NOW - timedelta(days=35), NOW]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to `targets`; the apps (models) of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def partition_names(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id::text, tableoid::regclass::text FROM {table}")  # noqa: S608
        return dict(cursor.fetchall())


def write_unpartitioned(apps: Any) -> dict[str, Any]:
    """Events (with and without refs) over three months, records, and a delivery, with
    the models of the unpartitioned schema."""
    event_type = apps.get_model("events_app", "EventType").objects.create(
        id=new_public_id(), key="purchase", name="Purchase"
    )
    customer = apps.get_model("customers", "Customer").objects.create(
        id=new_public_id(), external_id="c-1"
    )
    Event = apps.get_model("events_app", "Event")
    Record = apps.get_model("events_app", "PropertyRecord")
    events = []
    for n, moment in enumerate(MOMENTS * 2):
        events.append(
            Event.objects.create(
                id=new_public_id(),
                event_type=event_type,
                customer=customer,
                external_id=f"order-{n}" if n % 2 == 0 else None,
                occurred_at=moment,
                created_at=moment,
                data={"n": n},
            )
        )
        Record.objects.create(event=events[-1], property_id="amount", property_value=str(n))
        Record.objects.create(event=events[-1], property_id="paid", property_value="true")
    endpoint = apps.get_model("automation", "Endpoint").objects.create(
        url="https://example.com/hook", secret="s" * 32
    )
    delivery = apps.get_model("automation", "Delivery").objects.create(
        endpoint=endpoint, event=events[0], payload={}, message_id="msg-1"
    )
    return {
        "type": event_type.id,
        "events": {e.id: (e.created_at, e.external_id, e.data) for e in events},
        "records": set(Record.objects.values_list("id", "event_id", "property_id")),
        "delivery": (delivery.id, events[0].id),
    }


def assert_all_there(before: dict[str, Any]) -> None:
    events = {e.id: (e.created_at, e.external_id, e.data) for e in Event.objects.all()}
    assert events == before["events"]
    records = set(PropertyRecord.objects.values_list("id", "event_id", "property_id"))
    assert records == before["records"]
    assert EventCount.objects.aggregate(n=Sum("events"))["n"] == len(before["events"])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id FROM automation_delivery WHERE id = %s", [before["delivery"][0]]
        )
        assert cursor.fetchone()[0] == before["delivery"][1]


def test_partitioning_keeps_every_row_and_taking_it_back_does_too():
    migrate(UNPARTITIONED)
    with connection.cursor() as cursor:
        assert not is_partitioned(cursor)
    before = write_unpartitioned(migrate(UNPARTITIONED))

    migrate(latest())

    with connection.cursor() as cursor:
        assert is_partitioned(cursor)
    assert_all_there(before)
    # Each row in the partition of its month, records beside their event.
    placed = partition_names(EVENT_TABLE)
    for event_id, (created_at, _, _) in before["events"].items():
        assert placed[event_id] == Month.of(created_at).partition(EVENT_TABLE)
        assert event_get(event_id=event_id).created_at == created_at
    for record in PropertyRecord.objects.all():
        assert record.created_at == before["events"][record.event_id][0]
    assert set(partition_names(RECORD_TABLE).values()) == {
        Month.of(moment).partition(RECORD_TABLE) for moment in MOMENTS
    }
    # The refs moved to EventRef; the records' ids go on after the copied ones.
    refs = {(r, e) for r, e in EventRef.objects.values_list("ref", "event_id")}
    assert refs == {(ref, eid) for eid, (_, ref, _) in before["events"].items() if ref}
    last = max(record_id for record_id, _, _ in before["records"])
    added = PropertyRecord.objects.create(
        event_id=next(iter(before["events"])),
        property_id="late",
        property_value="1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert added.id > last
    added.delete()

    migrate(UNPARTITIONED)

    with connection.cursor() as cursor:
        assert not is_partitioned(cursor)
        cursor.execute(f"SELECT count(*) FROM {EVENT_TABLE}")  # noqa: S608
        assert cursor.fetchone()[0] == len(before["events"])
        cursor.execute(f"SELECT count(*) FROM {RECORD_TABLE}")  # noqa: S608
        assert cursor.fetchone()[0] == len(before["records"])

    migrate(latest())
    assert_all_there(before)
