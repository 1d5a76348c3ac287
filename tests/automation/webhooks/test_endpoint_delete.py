"""Deleting an endpoint: exactly its delivery log goes, set-based; events' is_delivered follows."""

from __future__ import annotations

import pytest

from automation.schedules.models import ScheduleRun
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.services import endpoint_create, endpoint_delete
from events_app.models import Event
from project.errors import ConflictError
from tests.deletes import NOW, PUBLIC_URL, a_schedule, delivery_log, row_counts
from tests.factories import CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

TABLES = (Endpoint, Endpoint.event_types.through, Delivery, DeliveryAttempt, ScheduleRun)
# Reading the endpoint's key, locking it and the rows of each table it cascades to
# directly (project.cascade.cascade_lock), the is_delivered UPDATE, SAVEPOINTs, one
# statement per table the cascade reaches (WorkflowEndpoint included): a fixed number
# whatever the size of the log; and the audit entry (the endpoint's event types read,
# one INSERT).
MAX_QUERIES = 19


def events(count: int) -> list[Event]:
    purchase, customer = EventTypeFactory(), CustomerFactory()
    return [EventFactory(event_type=purchase, customer=customer) for _ in range(count)]


def test_deleting_an_endpoint_removes_exactly_its_log_and_nothing_of_another():
    purchase = EventTypeFactory(key="purchase")
    shop = endpoint_create(url=PUBLIC_URL, event_types=["purchase"])[0]
    crm = endpoint_create(url=PUBLIC_URL, event_types=["purchase"])[0]
    delivery_log(shop, 2, events=events(3))
    kept = delivery_log(crm, 1, events=events(1))

    deleted = endpoint_delete(endpoint=shop)

    assert deleted == {
        "automation.Endpoint": 1,
        "automation.Endpoint_event_types": 1,
        "automation.Delivery": 5,
        "automation.DeliveryAttempt": 5,
    }
    assert row_counts(*TABLES) == {
        "automation.Endpoint": 1,
        "automation.Endpoint_event_types": 1,
        "automation.Delivery": 2,
        "automation.DeliveryAttempt": 2,
        "automation.ScheduleRun": 0,
    }
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert list(crm.event_types.all()) == [purchase]


def test_an_event_is_delivered_again_only_when_no_other_endpoint_owes_it():
    only_here, also_elsewhere = events(2)
    shop = endpoint_create(url=PUBLIC_URL)[0]
    crm = endpoint_create(url=PUBLIC_URL)[0]
    delivery_log(shop, events=[only_here, also_elsewhere])
    delivery_log(crm, events=[also_elsewhere])

    endpoint_delete(endpoint=shop)

    delivered = dict(Event.objects.values_list("pk", "is_delivered"))
    assert delivered == {only_here.pk: True, also_elsewhere.pk: False}


@pytest.mark.parametrize("deliveries", [1, 200])
def test_delete_takes_the_same_queries_and_reads_no_delivery_whatever_the_log(
    django_assert_max_num_queries, deliveries: int
):
    endpoint = endpoint_create(url=PUBLIC_URL)[0]
    delivery_log(endpoint, deliveries, events=events(1))

    with django_assert_max_num_queries(MAX_QUERIES) as queries:
        endpoint_delete(endpoint=endpoint)

    # Rows read: the endpoint's event types (the audit entry's "before": a few ids,
    # not the log), the endpoint's key, and whether a schedule protects it (EXISTS); the
    # locks taken first (project.cascade.cascade_lock) return one count each.
    sqls = [q["sql"] for q in queries.captured_queries]
    locks = [sql for sql in sqls if sql.startswith("SELECT count(*) FROM (")]
    reads = [sql for sql in sqls if sql.startswith("SELECT") and sql not in locks]
    assert [sql.split(" WHERE ")[0] for sql in reads] == [
        'SELECT "events_app_eventtype"."id" AS "pk" FROM "events_app_eventtype" INNER JOIN '
        '"automation_endpoint_event_types" ON ("events_app_eventtype"."id" = '
        '"automation_endpoint_event_types"."eventtype_id")',
        'SELECT "automation_endpoint"."id" AS "pk" FROM "automation_endpoint"',
        'SELECT 1 AS "a" FROM "automation_schedule"',
    ]
    locked = [lock.split(" FROM ")[2].split()[0] for lock in locks]
    assert locked[0] == '"automation_endpoint"'
    assert '"automation_delivery"' in locked
    assert all(lock.endswith("FOR UPDATE) AS locked") for lock in locks)
    assert row_counts(Delivery, DeliveryAttempt) == {
        "automation.Delivery": 0,
        "automation.DeliveryAttempt": 0,
    }


def test_a_schedule_run_keeps_its_row_when_the_endpoint_that_sent_it_goes():
    schedule = a_schedule()
    endpoint = endpoint_create(url=PUBLIC_URL)[0]
    [delivery] = delivery_log(endpoint, 1)
    run = ScheduleRun.objects.create(schedule=schedule, scheduled_for=NOW, delivery=delivery)

    endpoint_delete(endpoint=endpoint)

    run.refresh_from_db()
    assert (run.schedule_id, run.delivery_id) == (schedule.pk, None)


def test_a_schedules_endpoint_is_a_409_and_nothing_is_deleted():
    schedule = a_schedule()
    delivery_log(schedule.endpoint, 2)
    before = row_counts(*TABLES)

    with pytest.raises(ConflictError) as refused:
        endpoint_delete(endpoint=schedule.endpoint)

    assert refused.value.message == (
        f"Endpoint '{schedule.endpoint_id}' cannot be deleted. Cannot delete some endpoints: "
        "schedules refer to them through the protected foreign key 'Schedule.endpoint'."
    )
    assert row_counts(*TABLES) == before
