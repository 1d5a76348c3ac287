"""Deleting a customer: exactly their rows go, set-based, counters stay exact."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from automation.privacy import REDACTED_PAYLOAD
from automation.schedules.models import ScheduleRun
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.workflows.models import WorkflowRun
from customers.hooks import _erase_hooks
from customers.models import Customer
from customers.services import customer_delete
from events_app.models import Event, EventCount, PropertyRecord
from events_app.partitions.months import EVENT_TABLE, RECORD_TABLE, Month
from project.cascade import cascade_plan
from tests.conftest import API
from tests.customers.conftest import History
from tests.deletes import NOW, a_schedule
from tests.factories import (
    CustomerFactory,
    EventFactory,
    EventTypeFactory,
    PropertyRecordFactory,
)

pytestmark = pytest.mark.django_db

MODELS = (Customer, Event, PropertyRecord, Delivery, DeliveryAttempt, WorkflowRun)
# Reading the customer's key, SAVEPOINT, 7 DELETEs and the deliveries' SET NULL,
# RELEASE: one per table the cascade reaches, whatever the number of rows; around them
# the audit entry's INSERT and the SAVEPOINT / RELEASE of the transaction that holds
# both. Before them the erase hooks (one statement redacting the customer's deliveries
# and their attempts; the span of the events' months read, a DELETE of property records
# per month (one here), the events' DELETE, so the cascade leaves the events and what
# hangs off them out), after them the subscriptions read (customer.deleted).
DELETE_QUERIES = 21
EVENTS_READ = re.compile(r'\b"?events_app_event"?[\s.]')
EVENTS_DELETE = re.compile(r'DELETE FROM "?events_app_event"?\s')


def table_rows() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in MODELS}


def owners() -> dict[str, set[str]]:
    """Whose rows each table holds, by customer external id."""
    return {
        "events": set(Event.objects.values_list("customer__external_id", flat=True)),
        "records": set(
            PropertyRecord.objects.values_list("event__customer__external_id", flat=True)
        ),
        "deliveries": set(Delivery.objects.values_list("event__customer__external_id", flat=True)),
        "attempts": set(
            DeliveryAttempt.objects.values_list("delivery__event__customer__external_id", flat=True)
        ),
        "runs": set(WorkflowRun.objects.values_list("customer__external_id", flat=True)),
    }


def test_deleting_a_customer_removes_exactly_their_rows_and_nothing_of_another(
    customer_history: History,
):
    alice = customer_history("alice", 3)
    customer_history("bob", 2)

    deleted = customer_delete(customer=alice)

    # Her deliveries stay as redacted rows (counts), cancelled where pending.
    assert deleted == {
        "customers.Customer": 1,
        "events_app.Event": 3,
        "events_app.PropertyRecord": 6,
        "deliveries_redacted": 3,
        "deliveries_cancelled": 3,
        "automation.WorkflowRun": 3,
    }
    assert table_rows() == {
        "customers.Customer": 1,
        "events_app.Event": 2,
        "events_app.PropertyRecord": 4,
        "automation.Delivery": 5,
        "automation.DeliveryAttempt": 5,
        "automation.WorkflowRun": 2,
    }
    assert owners() == {
        "events": {"bob"},
        "records": {"bob"},
        "deliveries": {"bob", None},
        "attempts": {"bob", None},
        "runs": {"bob"},
    }
    redacted = Delivery.objects.filter(event__isnull=True)
    assert {(d.status, d.customer_id, str(d.payload)) for d in redacted} == {
        ("cancelled", None, str(REDACTED_PAYLOAD))
    }


def test_event_counters_and_total_items_stay_exact_after_the_delete(customer_history: History, api):
    alice = customer_history("alice", 3)
    bob = customer_history("bob", 2)
    login = EventTypeFactory(key="login")
    EventFactory(customer=alice, event_type=login)
    EventFactory(customer=bob, event_type=login)

    customer_delete(customer=alice)

    counters = dict(
        EventCount.objects.values_list("event_type__key").annotate(n=Sum("events")).order_by()
    )
    assert counters == {"purchase": 2, "login": 1}
    assert api.get(f"{API}/events").json()["data"]["total_items"] == 3
    assert api.get(f"{API}/events", {"event_type_id": login.pk}).json()["data"]["total_items"] == 1


@pytest.mark.parametrize("events", [1, 200])
def test_delete_takes_the_same_queries_and_reads_no_rows_whatever_the_number_of_events(
    customer_history: History, django_assert_num_queries, events: int
):
    customer = customer_history("alice", events)

    with django_assert_num_queries(DELETE_QUERIES) as queries:
        customer_delete(customer=customer)

    # The rows read are the first and last month of their events (an aggregate), the
    # customer's key and the subscriptions (for `customer.deleted`); everything else is
    # DELETE / UPDATE (the deliveries found by their customer inside the UPDATE).
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert [sql.split(" FROM ")[1].split(" ")[0] for sql in reads] == [
        "events_app_event",
        '"customers_customer"',
        '"automation_endpoint"',
    ]
    # Once the events' hook deleted them, nothing goes through the events again: such a
    # statement finds none, but reads every index entry the delete left behind.
    statements = [q["sql"] for q in queries.captured_queries]
    events_deleted = next(n for n, sql in enumerate(statements) if EVENTS_DELETE.match(sql))
    assert not [sql for sql in statements[events_deleted + 1 :] if EVENTS_READ.search(sql)]
    assert table_rows() == {
        **dict.fromkeys(table_rows(), 0),
        "automation.Delivery": events,
        "automation.DeliveryAttempt": events,
    }


def test_a_schedule_run_whose_delivery_was_the_customers_keeps_it_redacted(
    customer_history: History,
):
    # The customer's deliveries stay as redacted rows, so what refers to them (a
    # schedule run) keeps its link; nothing of the customer is left in the delivery.
    alice = customer_history("alice", 1)
    schedule = a_schedule()
    delivery = Delivery.objects.get(event__customer=alice)
    run = ScheduleRun.objects.create(schedule=schedule, scheduled_for=NOW, delivery=delivery)

    customer_delete(customer=alice)

    run.refresh_from_db()
    delivery.refresh_from_db()
    assert (run.schedule_id, run.delivery_id) == (schedule.pk, delivery.pk)
    assert (delivery.event_id, delivery.payload) == (None, REDACTED_PAYLOAD)


def describe(relations) -> list[tuple[str, str, list]]:
    return [
        (f"{r.model._meta.label}.{r.field.name}", r.action, describe(r.dependents))
        for r in relations
    ]


def test_the_delete_follows_every_relation_into_customers_read_from_the_models():
    # Read from _meta, not listed by hand: a new model that refers to customers,
    # events or deliveries shows up here (and in what an erasure removes).
    assert describe(cascade_plan(Customer)) == [
        ("customers.CustomerAlias.customer", "cascade", []),
        (
            "events_app.Event.customer",
            "cascade",
            [
                ("events_app.PropertyRecord.event", "cascade", []),
                (
                    "automation.Delivery.event",
                    "cascade",
                    [
                        ("automation.DeliveryAttempt.delivery", "cascade", []),
                        ("automation.ScheduleRun.delivery", "set", []),
                    ],
                ),
                ("automation.WorkflowRun.event", "cascade", []),
            ],
        ),
        ("automation.Delivery.customer", "set", []),
        ("automation.PolicyUsage.customer", "cascade", []),
        ("automation.PolicyCounter.customer", "cascade", []),
        ("automation.WorkflowRun.customer", "cascade", []),
        ("automation.SegmentMembership.customer", "cascade", []),
        ("automation.SegmentCheck.customer", "cascade", []),
    ]


def test_a_delete_removes_property_records_a_month_partition_at_a_time():
    # Events in four months, each with two property records, of her and of him: her
    # records go by one statement per month, each reaching only that month's partition
    # of the records and of the events (PostgreSQL plans a join on event_id alone over
    # every partition).
    alice, bob = CustomerFactory(external_id="alice"), CustomerFactory(external_id="bob")
    kind = EventTypeFactory()
    for days in (0, 35, 70, 105):
        for customer in (alice, bob):
            event = EventFactory(
                event_type=kind, customer=customer, created_at=NOW - timedelta(days=days)
            )
            PropertyRecordFactory.create_batch(2, event=event)
    months = {Month.of(NOW - timedelta(days=days)) for days in (0, 35, 70, 105)}

    with CaptureQueriesContext(connection) as queries:
        deleted = customer_delete(customer=alice)

    assert (deleted["events_app.Event"], deleted["events_app.PropertyRecord"]) == (4, 8)
    assert set(Event.objects.values_list("customer_id", flat=True)) == {bob.pk}
    assert PropertyRecord.objects.count() == 8
    pruned = set()
    for query in queries.captured_queries:
        sql = query["sql"]
        if not (sql.startswith("DELETE FROM events_app_propertyrecord") and "customer_id" in sql):
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (COSTS OFF) {sql}")
            plan = " ".join(row[0] for row in cursor.fetchall())
        scanned = set(
            re.findall(r" on (events_app_\w+_p\d{4}_\d{2}|events_app_\w+_default)\b", plan)
        )
        # One partition of each table; none for a month between hers that has none.
        assert len(scanned) in (0, 2), plan
        pruned |= scanned
    assert pruned == {
        month.partition(table) for month in months for table in (RECORD_TABLE, EVENT_TABLE)
    }


def test_the_deliveries_are_redacted_before_the_events_they_are_found_through_go():
    # The deliveries' hook reads the customer's events, which the events' hook deletes:
    # the events' hook is registered to run after the others.
    names = [name for name, _ in _erase_hooks.all()]
    assert names.index("deliveries") < names.index("events")


def test_the_ref_trigger_of_a_delete_probes_the_ref_index_whatever_the_delete_size():
    # The refs of a customer's million events are released by one trigger statement
    # joined to the ref table: planned as a hash of the whole table it spilled to disk.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = 'events_app_event_refs_remove'"
        )
        (settings,) = cursor.fetchone()
    assert set(settings) == {"enable_hashjoin=off", "enable_mergejoin=off"}
