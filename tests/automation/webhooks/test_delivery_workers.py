"""deliver_one and dispatch_due_deliveries: claims, leases, lost messages, fairness, races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction

from automation.webhooks.deliveries import QUEUE_LEASE, delivery_create, event_mark_delivered
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.webhooks.sender import _claim, _record, deliver_one, dispatch_due_deliveries
from automation.webhooks.services import endpoint_delete, endpoint_update
from tests.receiver import Reply

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    """Record what would be handed to the background instead of running it inline."""
    ids: list[str] = []
    lock = threading.Lock()

    def record(task, args_list) -> None:
        with lock:
            ids.extend(a[0] for a in args_list)

    monkeypatch.setattr("project.background.enqueue_many", record)
    return ids


def run_at_once(n: int, work):
    """Run `work` in n threads released together; each thread closes its DB connection."""
    barrier = threading.Barrier(n)
    results = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _create(endpoint, n: int = 1) -> list[Delivery]:
    with transaction.atomic():
        return [delivery_create(endpoint=endpoint, payload={"n": i}) for i in range(n)]


@pytest.mark.django_db
def test_dispatcher_leaves_freshly_queued_rows_and_resends_lost_ones(make_endpoint, receiver):
    with time_machine.travel(T0, tick=False) as clock:
        endpoint, _ = make_endpoint()
        (delivery,) = _create(endpoint)  # its task message is "lost": on_commit never ran
        assert dispatch_due_deliveries() == 0  # still within the queue lease
        clock.move_to(T0 + QUEUE_LEASE + timedelta(seconds=1))
        assert dispatch_due_deliveries() == 1
        assert dispatch_due_deliveries() == 0  # sent, nothing left
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_a_claimed_attempt_is_not_repeated_until_its_lease_lapses(make_endpoint, receiver):
    with time_machine.travel(T0, tick=False) as clock:
        endpoint, _ = make_endpoint()
        (delivery,) = _create(endpoint)
        claimed = _claim(delivery.pk, T0)  # a worker that then dies mid-call
        assert isinstance(claimed, Delivery)
        lease_end = claimed.locked_until
        clock.move_to(lease_end - timedelta(seconds=1))
        assert deliver_one(delivery.pk) == "not-due"
        assert dispatch_due_deliveries() == 0
        clock.move_to(lease_end + timedelta(seconds=1))
        assert dispatch_due_deliveries() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("succeeded", 2)
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["webhook-id"] == delivery.message_id


@pytest.mark.django_db
def test_a_late_result_of_a_superseded_attempt_is_discarded(make_endpoint, receiver):
    receiver.reply(Reply(status=500))
    endpoint, _ = make_endpoint()
    (delivery,) = _create(endpoint)
    stale = _claim(delivery.pk, datetime.now(tz=UTC))
    event_mark_delivered  # noqa: B018 - documents the other way a row stops being ours
    Delivery.objects.filter(pk=delivery.pk).update(status="cancelled")
    _record(
        stale,
        started_at=datetime.now(tz=UTC),
        duration_ms=5,
        status_code=500,
        error="HTTP 500",
        excerpt="",
        retry_after=None,
        refused=False,
    )
    delivery.refresh_from_db()
    assert delivery.status == "cancelled"
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["discarded"]


@pytest.mark.django_db
def test_an_endpoint_at_its_concurrency_limit_leaves_the_delivery_waiting_in_the_database(
    make_endpoint, receiver, settings
):
    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = 2
    with time_machine.travel(T0, tick=False):
        endpoint, _ = make_endpoint()
        first, second, third = _create(endpoint, 3)
        assert isinstance(_claim(first.pk, T0), Delivery)
        assert isinstance(_claim(second.pk, T0), Delivery)
        assert deliver_one(third.pk) == "endpoint-busy"
        # The dispatcher hands out no task for it while both slots are taken.
        assert dispatch_due_deliveries() == 0
    third.refresh_from_db()
    assert (third.status, third.attempt_count, third.next_attempt_at) == ("pending", 0, T0)
    assert third.queued_until is None
    assert receiver.requests == []


@pytest.mark.django_db
def test_a_worker_goes_on_with_its_endpoints_backlog_after_a_success(
    make_endpoint, receiver, settings
):
    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = 1
    endpoint, _ = make_endpoint()
    other, _ = make_endpoint(path="/other")
    deliveries = _create(endpoint, 4)
    (elsewhere,) = _create(other)

    assert deliver_one(deliveries[0].pk) == "succeeded"

    assert [r.path for r in receiver.requests] == ["/hook"] * 4
    assert set(Delivery.objects.filter(endpoint=endpoint).values_list("status", flat=True)) == {
        "succeeded"
    }
    elsewhere.refresh_from_db()
    assert elsewhere.status == "pending"  # another endpoint's work is not taken along


@pytest.mark.django_db
def test_no_follow_on_after_a_failure(make_endpoint, receiver):
    receiver.reply(Reply(status=503))
    endpoint, _ = make_endpoint()
    first, second = _create(endpoint, 2)
    deliver_one(first.pk)
    second.refresh_from_db()
    assert (len(receiver.requests), second.attempt_count) == (1, 0)


@pytest.mark.django_db
def test_dispatcher_enqueues_at_most_the_free_slots_of_an_endpoint(
    make_endpoint, settings, enqueued
):
    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = 3
    endpoint, _ = make_endpoint()
    other, _ = make_endpoint(path="/other")
    with time_machine.travel(T0, tick=False):
        busy = _create(endpoint, 6)
        idle = _create(other, 2)
        Delivery.objects.update(queued_until=None)
        assert isinstance(_claim(busy[0].pk, T0), Delivery)
        enqueued.clear()
        assert dispatch_due_deliveries() == 4
    # Two of the busy endpoint's waiting rows (its free slots; all are due at T0), and
    # both rows of the idle endpoint.
    waiting = {d.pk for d in busy[1:]}
    assert len([pk for pk in enqueued if pk in waiting]) == 2
    assert {d.pk for d in idle} <= set(enqueued)
    assert len(enqueued) == 4


@pytest.mark.django_db
def test_a_disabled_endpoint_gets_no_request(make_endpoint, receiver):
    endpoint, _ = make_endpoint()
    (delivery,) = _create(endpoint)
    endpoint_update(endpoint=endpoint, fields={"active": False})
    assert deliver_one(delivery.pk) == "endpoint-disabled"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "Endpoint is disabled.")
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_make_exactly_one_attempt(make_endpoint, receiver, enqueued):
    receiver.reply(Reply(status=200, delay=0.3))
    endpoint, _ = make_endpoint()
    (delivery,) = _create(endpoint)
    outcomes = run_at_once(8, lambda: deliver_one(delivery.pk))
    assert sorted(outcomes) == ["not-due"] * 7 + ["succeeded"]
    assert len(receiver.requests) == 1
    assert DeliveryAttempt.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_enqueue_each_due_row_once(
    make_endpoint, monkeypatch, enqueued, settings
):
    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = 100  # only the race matters here
    endpoint, _ = make_endpoint()
    rows = _create(endpoint, 50)
    Delivery.objects.update(queued_until=None)
    enqueued.clear()
    monkeypatch.setattr("django.conf.settings.HERALD_DELIVERY_DISPATCH_CHUNK", 7, raising=False)
    run_at_once(4, dispatch_due_deliveries)
    assert sorted(enqueued) == sorted(d.pk for d in rows)


@pytest.mark.django_db(transaction=True)
def test_ingesting_a_batch_enqueues_at_most_each_endpoints_concurrency_and_sends_the_rest(
    make_endpoint, settings, enqueued, receiver
):
    from events_app.ingestion import events_prepare, events_store
    from events_app.schemas import EventCreateIn, EventIn
    from tests.factories import EventTypeFactory

    settings.HERALD_DELIVERY_ENDPOINT_CONCURRENCY = 2
    first, _ = make_endpoint()
    second, _ = make_endpoint(path="/second")
    event_type = EventTypeFactory()
    items = [
        EventCreateIn(event=EventIn(event_type=event_type.key, customer_external_id=f"c{i}"))
        for i in range(5)
    ]
    prepared, invalid = events_prepare(items=items)
    assert invalid == []

    events_store(prepared=prepared)

    # 10 deliveries, but only 2 messages per endpoint; the other 6 wait unqueued.
    assert Delivery.objects.count() == 10
    assert len(enqueued) == 4
    assert {Delivery.objects.get(pk=pk).endpoint_id for pk in enqueued} == {first.pk, second.pk}
    assert Delivery.objects.filter(queued_until__isnull=True).count() == 6
    # A worker handed one message drains its endpoint's backlog after each success.
    [message_for_first, *_] = [
        pk for pk in enqueued if Delivery.objects.get(pk=pk).endpoint_id == first.pk
    ]
    deliver_one(message_for_first)
    sent_to_first = Delivery.objects.filter(endpoint=first, status="succeeded").count()
    assert sent_to_first == 5
    assert len(receiver.requests) == 5


def _endpoint_with_log(make_endpoint, path: str, n: int):
    from tests.factories import EventFactory

    endpoint, _ = make_endpoint(path=path)
    events = [EventFactory(is_delivered=False) for _ in range(n)]
    with transaction.atomic():
        for event in events:
            delivery = delivery_create(endpoint=endpoint, payload={}, event=event)
            DeliveryAttempt.objects.create(
                delivery=delivery, number=1, started_at=T0, duration_ms=1, outcome="retry"
            )
    return endpoint, events


@pytest.mark.django_db
def test_deleting_an_endpoint_never_loads_its_delivery_log(make_endpoint):
    from django.test.utils import CaptureQueriesContext

    small, _ = _endpoint_with_log(make_endpoint, "/small", 2)
    big, big_events = _endpoint_with_log(make_endpoint, "/big", 25)

    with CaptureQueriesContext(connection) as small_queries:
        endpoint_delete(endpoint=small)
    with CaptureQueriesContext(connection) as big_queries:
        endpoint_delete(endpoint=big)

    assert len(big_queries) == len(small_queries)
    # One DELETE empties the log before anything reads delivery ids (the ORM's cascade
    # would first load every row's id into memory: millions for a busy endpoint).
    statements = [q["sql"] for q in big_queries]
    [bulk_delete] = [
        i for i, sql in enumerate(statements) if sql.startswith('DELETE FROM "automation_delivery"')
    ]
    id_reads = [
        i for i, sql in enumerate(statements) if sql.startswith('SELECT "automation_delivery"."id"')
    ]
    assert all(i > bulk_delete for i in id_reads)
    assert Delivery.objects.count() == 0
    assert DeliveryAttempt.objects.count() == 0
    # Their only outstanding deliveries are gone: the events count as delivered again.
    assert all(e.__class__.objects.get(pk=e.pk).is_delivered for e in big_events)


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement forms")
def test_each_delivery_of_a_follow_on_run_is_one_claim_and_one_record_statement(
    make_endpoint, receiver, monkeypatch
):
    import psycopg
    from django.test.utils import CaptureQueriesContext

    endpoint, _ = make_endpoint()
    deliveries = _create(endpoint, 5)
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        sent.append(str(query).split(None, 3)[1])
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    with CaptureQueriesContext(connection) as orm:
        assert deliver_one(deliveries[0].pk) == "succeeded"

    # 5 claims that returned a row, 1 that found none, 5 records (prepared statements,
    # not the ORM's); the endpoint's last_success_at once (then at most once a minute).
    # No BEGIN/COMMIT, no SELECT.
    assert sent.count("claimed") == 6
    assert sent.count("ours") == 5
    assert len(sent) == 12
    assert [q["sql"].split(None, 2)[:2] for q in orm.captured_queries] == [
        ["UPDATE", '"automation_endpoint"']
    ]
    assert len(receiver.requests) == 5
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["succeeded"] * 5
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
