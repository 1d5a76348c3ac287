"""Events and property records partitioned by month on PostgreSQL: where rows land, the
partitions made ahead, retention, and refs unique forever across partitions."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from automation.webhooks.models import Delivery, Endpoint
from events_app.models import Event, EventCount, EventRef, PropertyRecord
from events_app.partitions.maintenance import (
    month_partitions,
    partitions_ensure,
    partitions_maintain,
    retention_apply,
    retention_expired,
    retention_parse,
)
from events_app.partitions.months import EVENT_TABLE, Month
from project.admin.lists import table_row_estimate
from project.background import job_by_name
from tests.conftest import API
from tests.factories import (
    CustomerFactory,
    EventFactory,
    EventTypeFactory,
    PropertyDefinitionFactory,
    PropertyRecordFactory,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()
LONG_AGO = NOW - timedelta(days=800)


def partition_of(event: Event) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {EVENT_TABLE} WHERE id = %s",  # noqa: S608
            [event.id],
        )
        return str(cursor.fetchone()[0])


def counted() -> int:
    return int(EventCount.objects.aggregate(n=Sum("events"))["n"] or 0)


def post_event(api: APIClient, event_type_key: str, ref: str, **extra: object) -> dict:
    body = {
        "event": {"event_type": event_type_key, "customer_external_id": "c-1", "external_id": ref}
    }
    body.update(extra)
    response = api.post(f"{API}/events", body, format="json")
    return {"status": response.status_code, **response.json()}


def test_an_ingested_event_and_its_records_land_in_the_current_month_partition(api):
    purchase = EventTypeFactory(key="purchase")
    PropertyDefinitionFactory(event_type=purchase, property_id="amount", value_type="number")

    answer = post_event(
        api,
        "purchase",
        "order-1",
        property_records=[{"property_id": "amount", "property_value": 5}],
    )

    assert answer["status"] == 201, answer
    event = Event.objects.get()
    assert partition_of(event) == Month.of(event.created_at).partition(EVENT_TABLE)
    record = PropertyRecord.objects.get()
    assert record.created_at == event.created_at
    assert list(EventRef.objects.values_list("ref", "event_id")) == [("order-1", event.id)]


def test_the_migration_made_this_month_and_two_ahead():
    current = Month.of(timezone.now())

    assert {current, current.plus(1), current.plus(2)} <= set(month_partitions())


def test_an_orm_write_of_a_month_without_partition_creates_that_month_first():
    assert Month.of(LONG_AGO) not in month_partitions()

    old = EventFactory(created_at=LONG_AGO)
    PropertyRecordFactory(event=old)

    assert partition_of(old) == Month.of(LONG_AGO).partition(EVENT_TABLE)
    assert Month.of(LONG_AGO) in month_partitions()
    assert PropertyRecord.objects.filter(event=old).count() == 1
    assert counted() == Event.objects.count() == 1
    assert partitions_ensure(now=NOW) == []  # nothing left to do


def test_the_periodic_job_creates_the_months_ahead_of_a_later_now():
    later = NOW + timedelta(days=200)

    job_by_name("events.partitions").func(later)

    month = Month.of(later)
    assert {month, month.plus(1), month.plus(2)} <= set(month_partitions())


def test_a_ref_is_unique_across_months_and_an_orm_writer_cannot_take_a_taken_one():
    purchase = EventTypeFactory(key="purchase")
    first = EventFactory(event_type=purchase, external_id="order-7", created_at=LONG_AGO)

    with pytest.raises(IntegrityError), transaction.atomic():
        EventFactory(event_type=purchase, external_id="order-7")

    assert list(Event.objects.values_list("id", flat=True)) == [first.id]
    assert EventRef.objects.get(ref="order-7").event_id == first.id


def test_a_ref_held_in_an_old_month_is_a_409_naming_its_event(api):
    customer = CustomerFactory(external_id="c-1")
    first = EventFactory(
        event_type__key="purchase", customer=customer, external_id="order-9", created_at=LONG_AGO
    )
    partitions_ensure(now=NOW)  # the old event in its own month partition

    again = post_event(api, "purchase", "order-9")

    assert again["status"] == 409
    assert again["event_id"] == first.id
    assert list(Event.objects.values_list("id", flat=True)) == [first.id]


def test_deleting_an_event_releases_its_ref_and_changing_it_moves_it():
    purchase = EventTypeFactory(key="purchase")
    event = EventFactory(event_type=purchase, external_id="order-1")
    Event.objects.filter(pk=event.pk).update(external_id="order-2")
    assert list(EventRef.objects.values_list("ref", flat=True)) == ["order-2"]

    Event.objects.filter(pk=event.pk).delete()

    assert EventRef.objects.count() == 0
    EventFactory(event_type=purchase, external_id="order-2")  # free again


def test_get_event_finds_an_event_whose_creation_time_is_far_from_its_id(api):
    event = EventFactory(created_at=LONG_AGO)  # an id of today, a row of long ago
    PropertyRecordFactory(event=event, property_id="plan", property_value="pro")

    found = api.get(f"{API}/events/{event.id}")
    records = api.get(f"{API}/events/{event.id}/property-records")

    assert found.status_code == 200
    assert found.json()["data"]["event_id"] == event.id
    assert [r["property_id"] for r in records.json()["data"]["property_records"]] == ["plan"]


def dropped_setup() -> tuple[Event, Event, Delivery]:
    """An event past any retention (in its own month partition), one of now, and a
    delivery of the old one."""
    old = EventFactory(event_type__key="purchase", external_id="old-1", created_at=LONG_AGO)
    PropertyRecordFactory(event=old)
    new = EventFactory(event_type=old.event_type, external_id="new-1")
    PropertyRecordFactory(event=new)
    partitions_ensure(now=NOW)
    with connection.cursor() as cursor:
        # The rows were committed long ago: their deferred key checks have run (a
        # month's partition cannot be dropped while its rows' checks are pending).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    endpoint = Endpoint.objects.create(url="https://example.com/hook", secret="s" * 32)
    delivery = Delivery.objects.create(
        endpoint=endpoint, event=old, payload={}, message_id=f"msg_{old.id}"
    )
    return old, new, delivery


def test_retention_dry_run_lists_the_months_past_it_and_changes_nothing():
    dropped_setup()
    out = io.StringIO()

    call_command("events_retention", "--dry-run", "--retention", "P13M", stdout=out)

    assert f"Would drop {Month.of(LONG_AGO)}: 1 events and 1 property records" in out.getvalue()
    assert Event.objects.count() == 2
    assert PropertyRecord.objects.count() == 2
    assert Month.of(LONG_AGO) in month_partitions()


def test_retention_drops_whole_old_months_keeps_counts_exact_and_touches_nothing_else(api):
    old, new, delivery = dropped_setup()
    current = Month.of(NOW)

    dropped = retention_apply(now=NOW, retention=retention_parse("P13M"))

    assert [d.month for d in dropped] == [Month.of(LONG_AGO)]
    assert list(Event.objects.values_list("id", flat=True)) == [new.id]
    assert list(PropertyRecord.objects.values_list("event_id", flat=True)) == [new.id]
    assert Month.of(LONG_AGO) not in month_partitions()
    assert current in month_partitions()
    assert counted() == 1
    assert api.get(f"{API}/events").json()["data"]["total_items"] == 1
    # Deliveries and refs of dropped events stay: the ref is never taken again.
    assert Delivery.objects.filter(pk=delivery.pk, event_id=old.id).exists()
    assert EventRef.objects.filter(ref="old-1", event_id=old.id).exists()
    assert retention_expired(now=NOW, retention=retention_parse("P13M")) == []


def test_retention_never_drops_a_month_that_is_not_entirely_past_it():
    cutoff_month = Month.of(NOW - timedelta(days=30))
    inside = EventFactory(created_at=max(cutoff_month.start, NOW - timedelta(days=29)))
    partitions_ensure(now=NOW)

    retention_apply(now=NOW, retention=retention_parse("P30D"))

    assert Event.objects.filter(pk=inside.pk).exists()


def test_the_job_applies_retention_only_when_it_is_set(settings):
    dropped_setup()
    settings.HERALD_EVENT_RETENTION = ""
    partitions_maintain(NOW)
    assert Event.objects.count() == 2

    settings.HERALD_EVENT_RETENTION = "P13M"
    partitions_maintain(NOW)
    assert Event.objects.count() == 1


def test_a_bad_retention_setting_is_refused():
    with pytest.raises(ImproperlyConfigured):
        retention_parse("13 months")
    with pytest.raises(ImproperlyConfigured):
        retention_parse("PT0S")


def test_month_arithmetic_crosses_years():
    assert Month(2026, 11).plus(2) == Month(2027, 1)
    assert Month(2027, 1).plus(-1) == Month(2026, 12)
    assert Month.of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == Month(2026, 12)


def test_the_admin_row_estimate_of_the_partitioned_table_sums_its_partitions():
    EventFactory.create_batch(3)
    EventFactory(created_at=LONG_AGO)
    partitions_ensure(now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EVENT_TABLE}")

    assert table_row_estimate(Event) == 4
