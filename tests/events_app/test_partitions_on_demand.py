"""No default partition: a writer that names a month without partitions creates them
(events_app.partitions.ondemand), and lists sorted by time read the months in order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction

from events_app.models import Event
from events_app.partitions.maintenance import month_partitions
from events_app.partitions.months import EVENT_TABLE, Month
from events_app.selectors import event_list
from tests.conftest import API
from tests.factories import EventFactory, EventTypeFactory

FAR = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)  # a month the migration did not make


def post(api: Any, ref: str) -> Any:
    body = {"event": {"event_type": "purchase", "customer_external_id": "c-1", "external_id": ref}}
    return api.post(f"{API}/events", body, format="json")


def partition_of(event_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {EVENT_TABLE} WHERE id = %s",  # noqa: S608
            [event_id],
        )
        return str(cursor.fetchone()[0])


def default_partitions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE p.partdefid <> 0"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db
def test_there_is_no_default_partition() -> None:
    assert default_partitions() == 0


@pytest.mark.django_db
def test_an_event_posted_in_a_month_without_partition_is_stored_in_its_new_partition(
    api: Any,
) -> None:
    EventTypeFactory(key="purchase")
    assert Month.of(FAR) not in month_partitions()

    with time_machine.travel(FAR, tick=False):
        response = post(api, "far-1")

    assert response.status_code == 201, response.json()
    event_id = response.json()["data"]["event_id"]
    assert partition_of(event_id) == Month.of(FAR).partition(EVENT_TABLE)
    assert Month.of(FAR) in month_partitions()


@pytest.mark.django_db
def test_a_month_made_in_a_transaction_that_rolled_back_is_made_again() -> None:
    with transaction.atomic():
        EventFactory(created_at=FAR)
        transaction.set_rollback(True)
    assert Month.of(FAR) not in month_partitions()

    event = EventFactory(created_at=FAR)

    assert partition_of(event.id) == Month.of(FAR).partition(EVENT_TABLE)


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_naming_a_new_month_are_all_stored_and_make_it_once(
    make_api: Any,
) -> None:
    EventTypeFactory(key="purchase")
    clients = [make_api() for _ in range(4)]
    start = threading.Barrier(len(clients))
    answers: list[int] = []
    errors: list[BaseException] = []

    def poster(client: Any, n: int) -> None:
        try:
            start.wait(timeout=30)
            answers.append(post(client, f"far-{n}").status_code)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    with time_machine.travel(FAR, tick=True):
        threads = [threading.Thread(target=poster, args=(c, n)) for n, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == []
    assert answers == [201] * 4
    assert {partition_of(e) for e in Event.objects.values_list("id", flat=True)} == {
        Month.of(FAR).partition(EVENT_TABLE)
    }
    assert month_partitions().count(Month.of(FAR)) == 1


@pytest.mark.django_db
def test_the_list_sorted_by_time_reads_the_months_in_order_without_merging_them() -> None:
    EventFactory()
    query = event_list().values_list("id")[100:200].query
    sql, params = query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Append" in plan, plan
    assert "Merge Append" not in plan, plan
