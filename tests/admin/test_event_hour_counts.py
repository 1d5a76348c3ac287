"""The dashboard's hourly event counters stay exact under every write path (PostgreSQL):
ingest (single and batch), ORM writes, deletes, a customer's erasure, a change of
type, retention dropping a month, and the fold of past hours' slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import Trunc

from customers.services import customer_delete
from events_app.activity import event_hour_counts, hour_counts_fold
from events_app.models import Event, EventHourCount
from events_app.partitions.maintenance import partitions_ensure, retention_apply, retention_parse
from tests.conftest import API
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

NOW = datetime.now(UTC)


def counted() -> dict[tuple[datetime, str], int]:
    """The counters, summed over slots, without the hours that hold nothing."""
    rows = EventHourCount.objects.values_list("hour", "event_type_id").annotate(n=Sum("events"))
    return {(hour, type_id): n for hour, type_id, n in rows if n}


def actual() -> dict[tuple[datetime, str], int]:
    """The same figures counted from the events themselves."""
    rows = (
        Event.objects.annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .values_list("hour", "event_type_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(hour, type_id): n for hour, type_id, n in rows}


@pytest.fixture
def types():
    return EventTypeFactory(key="purchase"), EventTypeFactory(key="login")


def test_single_and_batch_ingest_are_counted_in_their_hour(api, types):
    single = api.post(
        f"{API}/events",
        {"event": {"event_type": "purchase", "customer_external_id": "c-1"}},
        format="json",
    )
    batch = api.post(
        f"{API}/events/batch",
        {
            "events": [
                {"event": {"event_type": "login", "customer_external_id": "c-1"}},
                {"event": {"event_type": "login", "customer_external_id": "c-2"}},
                {"event": {"event_type": "nope", "customer_external_id": "c-2"}},
            ]
        },
        format="json",
    )

    assert single.status_code == 201
    assert batch.status_code == 200
    assert counted() == actual()
    assert sorted(counted().values()) == [1, 2]


def test_deletes_erasure_and_a_change_of_type_keep_the_counts_exact(types):
    purchase, login = types
    alice, bob = CustomerFactory(), CustomerFactory()
    for days in (0, 1, 3, 12):
        EventFactory(event_type=purchase, customer=alice, created_at=NOW - timedelta(days=days))
        EventFactory(event_type=login, customer=bob, created_at=NOW - timedelta(days=days))
    assert counted() == actual()

    Event.objects.filter(customer=bob, created_at__lt=NOW - timedelta(days=2)).delete()
    assert counted() == actual()

    moved = Event.objects.filter(customer=alice).order_by("created_at").first()
    assert moved is not None
    moved.event_type = login
    moved.save(update_fields=["event_type"])
    assert counted() == actual()

    customer_delete(customer=alice)
    assert counted() == actual()
    assert sum(counted().values()) == 2


def test_retention_takes_a_dropped_months_hours_off_the_counts(types):
    purchase, _ = types
    customer = CustomerFactory()
    old = NOW - timedelta(days=800)
    EventFactory.create_batch(3, event_type=purchase, customer=customer, created_at=old)
    EventFactory(event_type=purchase, customer=customer, created_at=NOW)
    # The old events wait in the default partition; their month is made and they move
    # into it (within the table: no trigger fires, the counts stay).
    partitions_ensure(now=NOW)
    assert sum(counted().values()) == 4

    dropped = retention_apply(now=NOW, retention=retention_parse("P13M"))

    assert dropped
    assert counted() == actual()
    assert sum(counted().values()) == 1


def test_the_fold_puts_past_hours_in_one_row_and_changes_no_total(types):
    purchase, login = types
    customer = CustomerFactory()
    for hours in (0, 2, 5):
        EventFactory.create_batch(
            2, event_type=purchase, customer=customer, created_at=NOW - timedelta(hours=hours)
        )
    EventFactory(event_type=login, customer=customer, created_at=NOW - timedelta(hours=5))
    # Counters written by other connections land in other slots.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_app_eventhourcount SET slot = 7 WHERE hour < %s",
            [NOW - timedelta(hours=4)],
        )
        cursor.execute(
            """INSERT INTO events_app_eventhourcount (hour, event_type_id, slot, events)
            SELECT hour, event_type_id, 0, 0 FROM events_app_eventhourcount WHERE slot = 7"""
        )
    before = counted()

    hour_counts_fold(NOW)

    assert counted() == before == actual()
    past = EventHourCount.objects.filter(hour__lt=NOW - timedelta(hours=2))
    assert sorted(past.values_list("slot", "events")) == [(0, 1), (0, 2), (0, 2)]


def test_the_dashboard_reads_days_from_the_hourly_counts(types):
    purchase, login = types
    customer = CustomerFactory()
    EventFactory.create_batch(2, event_type=purchase, customer=customer, created_at=NOW)
    EventFactory(event_type=login, customer=customer, created_at=NOW - timedelta(days=2))
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)

    rows = event_hour_counts(
        since=today - timedelta(days=6), until=NOW + timedelta(hours=1), bucket="day"
    )

    assert sorted(rows) == sorted(
        [(today, purchase.pk, 2), (today - timedelta(days=2), login.pk, 1)]
    )


def test_runs_are_counted_by_the_hour_they_were_created_until_deleted_and_deliveries_stay():
    from automation.activity import ActivityHourCount, activity_hour_counts_fold
    from automation.webhooks.models import Delivery, Endpoint
    from automation.workflows.models import Workflow, WorkflowRun

    def created() -> dict[tuple[str, datetime], int]:
        rows = ActivityHourCount.objects.values_list("kind", "hour").annotate(n=Sum("created"))
        return {(kind, hour): n for kind, hour, n in rows if n}

    customer = CustomerFactory()
    events = [EventFactory(customer=customer, created_at=NOW - timedelta(hours=h)) for h in (0, 3)]
    workflow = Workflow.objects.create(name="w")
    endpoint = Endpoint.objects.create(url="https://example.com/h", secret="s" * 32)
    for event in events:
        WorkflowRun.objects.create(
            workflow=workflow, event=event, customer=customer, created_at=event.created_at
        )
        Delivery.objects.create(
            endpoint=endpoint,
            event=event,
            payload={},
            message_id=f"m-{event.id}",
            created_at=event.created_at,
        )
    hour = Trunc("created_at", "hour", tzinfo=UTC)
    expected = {
        ("run", h): 1 for h in WorkflowRun.objects.annotate(h=hour).values_list("h", flat=True)
    } | {("delivery", h): 1 for h in Delivery.objects.annotate(h=hour).values_list("h", flat=True)}
    assert created() == expected

    activity_hour_counts_fold(NOW)
    assert created() == expected

    # Deleting the customer deletes the runs; the deliveries stay as redacted rows
    # (automation.privacy), so the dashboard's delivery counts stay as they were.
    customer_delete(customer=customer)
    assert created() == {key: n for key, n in expected.items() if key[0] == "delivery"}
