"""Seed 003's statuses: INACTIVE until the callback has been called, then ACTIVE.

Firing a tick only queues a delivery; the schedule turns ACTIVE when the sender makes
the first attempt that goes out (any response, or a network error). An attempt the
outbound guard refuses sent nothing and does not count. PAUSED and FINISHED are never
overridden by a callback that was already in flight.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from automation.schedules.models import Schedule
from automation.schedules.scheduler import dispatch_due_schedules
from automation.schedules.services import schedule_mark_called, schedule_pause, schedule_resume
from automation.webhooks.models import Delivery, DeliveryAttempt
from automation.webhooks.sender import GUARD_REFUSED, deliver_one
from tests.automation.schedules.conftest import NOW
from tests.celery_worker import celery_broker, celery_worker, wait_until
from tests.conftest import API
from tests.receiver import Receiver, Reply

MINUTE = timedelta(minutes=1)
FIRST_TICK = NOW + MINUTE
URL = f"{API}/schedules"


def status_of(schedule: Schedule) -> str:
    schedule.refresh_from_db()
    return schedule.status


def fire_first_tick(make_schedule: Callable[..., Schedule], url: str, **kwargs: Any) -> Delivery:
    """A schedule whose first tick has fired: its callback is a pending, unsent delivery."""
    schedule = make_schedule(callback_url=url, **kwargs)
    assert dispatch_due_schedules(FIRST_TICK) == 1  # on_commit never runs here: nothing sent
    delivery = Delivery.objects.get(endpoint_id=schedule.endpoint_id)
    assert (delivery.attempt_count, status_of(schedule)) == (0, "INACTIVE")
    return delivery


def schedule_of(delivery: Delivery) -> Schedule:
    return Schedule.objects.get(endpoint_id=delivery.endpoint_id)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "succeeded"), (503, "retry"), (400, "failed")]
)
def test_the_first_call_makes_the_schedule_active_whatever_the_answer(
    make_schedule: Callable[..., Schedule], receiver: Receiver, status: int, outcome: str
) -> None:
    receiver.reply(Reply(status=status))
    delivery = fire_first_tick(make_schedule, receiver.url("/cb"))

    with time_machine.travel(FIRST_TICK, tick=False):
        deliver_one(delivery.pk)

    assert len(receiver.requests) == 1
    assert DeliveryAttempt.objects.get(delivery=delivery).outcome == outcome
    schedule = schedule_of(delivery)
    assert schedule.status == "ACTIVE"
    assert schedule.updated_at == FIRST_TICK


@pytest.mark.django_db
def test_a_call_that_cannot_connect_counts_as_called(
    make_schedule: Callable[..., Schedule], settings: Any
) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    # Port 1: nothing listens, the connection is refused (the request reached the network).
    delivery = fire_first_tick(make_schedule, "http://127.0.0.1:1/closed")

    with time_machine.travel(FIRST_TICK, tick=False):
        assert deliver_one(delivery.pk) == "failed"

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.status_code, attempt.outcome) == (None, "retry")
    assert "Connection refused" in attempt.error
    assert status_of(schedule_of(delivery)) == "ACTIVE"


@pytest.mark.django_db
def test_an_attempt_the_guard_refuses_is_not_a_call(
    make_schedule: Callable[..., Schedule], receiver: Receiver, settings: Any
) -> None:
    delivery = fire_first_tick(make_schedule, receiver.url("/cb"))
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []  # loopback is refused again at call time

    with time_machine.travel(FIRST_TICK, tick=False):
        assert deliver_one(delivery.pk) == "failed"

    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.status_code, attempt.outcome) == (None, "failed")
    assert attempt.error.startswith(GUARD_REFUSED)
    assert receiver.requests == []
    schedule = schedule_of(delivery)
    assert status_of(schedule) == "INACTIVE"
    # Nor does resume take the refused attempt for a call.
    schedule_pause(schedule=schedule)
    with time_machine.travel(FIRST_TICK, tick=False):
        assert schedule_resume(schedule=schedule).status == "INACTIVE"


@pytest.mark.django_db
def test_a_paused_schedule_whose_callback_in_flight_is_called_stays_paused(
    make_schedule: Callable[..., Schedule], receiver: Receiver
) -> None:
    delivery = fire_first_tick(make_schedule, receiver.url("/cb"))
    schedule = schedule_pause(schedule=schedule_of(delivery))

    with time_machine.travel(FIRST_TICK, tick=False):
        assert deliver_one(delivery.pk) == "succeeded"

    assert len(receiver.requests) == 1
    assert status_of(schedule) == "PAUSED"
    assert schedule.next_run_at is None
    # It was called while paused: resumed, it is ACTIVE.
    with time_machine.travel(FIRST_TICK, tick=False):
        assert schedule_resume(schedule=schedule).status == "ACTIVE"


@pytest.mark.django_db
def test_a_finished_schedule_whose_last_callback_is_called_stays_finished(
    make_schedule: Callable[..., Schedule], receiver: Receiver
) -> None:
    # The first tick is the last before end_date: firing it finishes the schedule.
    schedule = make_schedule(
        callback_url=receiver.url("/cb"), end_date=FIRST_TICK + timedelta(seconds=30)
    )
    assert dispatch_due_schedules(FIRST_TICK) == 1
    assert status_of(schedule) == "FINISHED"
    delivery = Delivery.objects.get()

    with time_machine.travel(FIRST_TICK, tick=False):
        assert deliver_one(delivery.pk) == "succeeded"

    assert len(receiver.requests) == 1
    assert status_of(schedule) == "FINISHED"


@pytest.mark.django_db(transaction=True)
def test_many_workers_marking_one_schedule_called_change_it_once(
    make_schedule: Callable[..., Schedule],
) -> None:
    active = make_schedule()
    paused = schedule_pause(schedule=make_schedule())
    workers = 8
    barrier = threading.Barrier(workers)
    changed: dict[str, list[bool]] = {active.pk: [], paused.pk: []}

    def work(schedule: Schedule) -> None:
        try:
            barrier.wait(timeout=30)
            result = schedule_mark_called(endpoint_id=str(schedule.endpoint_id))
            changed[schedule.pk].append(result)
        finally:
            connection.close()  # each thread has its own connection

    threads = [
        threading.Thread(target=work, args=(schedule,))
        for schedule in (active, paused)
        for _ in range(workers // 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # One call records the first call of each; only the INACTIVE one turns ACTIVE.
    for schedule in (active, paused):
        assert sorted(changed[schedule.pk]) == [False] * (workers // 2 - 1) + [True]
    assert (status_of(active), status_of(paused)) == ("ACTIVE", "PAUSED")
    assert active.first_called_at is not None
    assert paused.first_called_at is not None


@pytest.mark.django_db
def test_only_the_first_call_is_recorded(make_schedule: Callable[..., Schedule]) -> None:
    schedule = make_schedule()
    with time_machine.travel(FIRST_TICK, tick=False):
        assert schedule_mark_called(endpoint_id=str(schedule.endpoint_id)) is True
    with time_machine.travel(FIRST_TICK + MINUTE, tick=False):
        assert schedule_mark_called(endpoint_id=str(schedule.endpoint_id)) is False

    schedule.refresh_from_db()
    assert (schedule.status, schedule.first_called_at) == ("ACTIVE", FIRST_TICK)


@pytest.mark.django_db
def test_the_backfill_marks_schedules_called_before_the_field_existed(
    make_schedule: Callable[..., Schedule],
) -> None:
    from django.apps import apps

    backfill = importlib.import_module(
        "automation.migrations.0006_backfill_schedule_first_called_at"
    ).backfill
    never = make_schedule()
    active = make_schedule()
    paused_called = schedule_pause(schedule=make_schedule())
    paused_refused = schedule_pause(schedule=make_schedule())
    Schedule.objects.filter(pk=active.pk).update(status="ACTIVE", last_run_at=NOW)
    for schedule, error in ((paused_called, "HTTP 503"), (paused_refused, GUARD_REFUSED + "x")):
        delivery = Delivery.objects.create(
            endpoint_id=schedule.endpoint_id, payload={}, message_id=f"msg_{schedule.pk}"
        )
        DeliveryAttempt.objects.create(
            delivery=delivery, number=1, started_at=FIRST_TICK, error=error, outcome="retry"
        )

    backfill(apps, None)

    called = dict(Schedule.objects.values_list("pk", "first_called_at"))
    assert called == {
        never.pk: None,
        active.pk: NOW,
        paused_called.pk: FIRST_TICK,
        paused_refused.pk: None,
    }


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_api_reads_inactive_while_the_first_callback_is_queued_and_active_once_called(
    make_schedule: Callable[..., Schedule], receiver: Receiver, api: APIClient
) -> None:
    now = datetime.now(UTC)  # the real clock: a real worker sends it
    schedule = make_schedule(
        callback_url=receiver.url("/cb"), now=now - 2 * MINUTE, end_date=now + timedelta(days=1)
    )

    with celery_broker() as broker:
        assert dispatch_due_schedules() == 1  # the task is on the broker; no worker runs yet
        queued = api.get(f"{URL}/{schedule.pk}").json()["data"]
        assert (queued["status"], receiver.requests) == ("INACTIVE", [])
        assert queued["last_run_at"] is not None
        assert Delivery.objects.get().queued_until is not None

        with celery_worker(broker):
            receiver.wait_for(1, timeout=30)
            wait_until(
                lambda: api.get(f"{URL}/{schedule.pk}").json()["data"]["status"] == "ACTIVE",
                what="the schedule to read ACTIVE",
            )

    assert DeliveryAttempt.objects.get().status_code == 200
