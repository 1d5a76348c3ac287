"""The scheduler: firing, status transitions, end date, coalescing, pause/resume, DST."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from standardwebhooks.webhooks import Webhook

from automation.schedules import scheduler
from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.scheduler import dispatch_due_schedules
from automation.schedules.services import (
    schedule_pause,
    schedule_resume,
    schedule_run_now,
)
from automation.webhooks.models import Delivery
from project.errors import ConflictError
from tests.automation.schedules.conftest import NOW
from tests.receiver import Receiver

MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True, params=["set_based", "orm"])
def scheduler_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every scheduler test runs on both paths: PostgreSQL's one statement and the ORM one."""
    monkeypatch.setattr(scheduler, "SET_BASED", request.param == "set_based")
    return str(request.param)


def runs_of(schedule: Schedule) -> list[datetime]:
    return list(
        ScheduleRun.objects.filter(schedule=schedule)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )


def test_next_run_after_stops_at_the_end_date(make_schedule: Callable[..., Schedule]) -> None:
    schedule = make_schedule(interval="0 * * * *", end_date=NOW + 2 * 60 * MINUTE)
    assert schedule.next_run_after(NOW) == NOW + 60 * MINUTE
    assert schedule.next_run_after(NOW + 60 * MINUTE) == NOW + 120 * MINUTE  # at end_date: runs
    assert schedule.next_run_after(NOW + 120 * MINUTE) is None


def test_due_schedule_fires_once_and_advances(make_schedule: Callable[..., Schedule]) -> None:
    schedule = make_schedule(interval="*/5 * * * *", context={"user": 1})
    tick = NOW + 5 * MINUTE

    fired = dispatch_due_schedules(tick + timedelta(seconds=1))

    assert fired == 1
    schedule.refresh_from_db()
    assert schedule.status == Schedule.Status.INACTIVE  # queued, not called yet (seed 003)
    assert schedule.last_run_at == tick + timedelta(seconds=1)
    assert schedule.next_run_at == NOW + 10 * MINUTE
    run = ScheduleRun.objects.get()
    assert run.scheduled_for == tick
    delivery = Delivery.objects.get()
    assert run.delivery_id == delivery.pk
    assert delivery.endpoint_id == schedule.endpoint_id
    assert delivery.payload == {"user": 1}
    assert delivery.status == Delivery.Status.PENDING
    # Retries stop when the next tick is due, so runs never pile up.
    assert delivery.give_up_at == NOW + 10 * MINUTE


def test_nothing_fires_before_the_tick(make_schedule: Callable[..., Schedule]) -> None:
    schedule = make_schedule(interval="*/5 * * * *")

    assert dispatch_due_schedules(NOW + 5 * MINUTE - timedelta(microseconds=1)) == 0

    schedule.refresh_from_db()
    assert schedule.status == Schedule.Status.INACTIVE
    assert (ScheduleRun.objects.count(), Delivery.objects.count()) == (0, 0)


def test_dispatching_the_same_tick_twice_fires_once(make_schedule: Callable[..., Schedule]) -> None:
    make_schedule()
    assert dispatch_due_schedules(NOW + MINUTE) == 1
    assert dispatch_due_schedules(NOW + MINUTE) == 0
    assert (ScheduleRun.objects.count(), Delivery.objects.count()) == (1, 1)


def test_a_tick_whose_run_exists_advances_without_a_second_delivery(
    make_schedule: Callable[..., Schedule],
) -> None:
    # As if another process had inserted the run but this one still saw the old next_run_at.
    schedule = make_schedule()
    ScheduleRun.objects.create(schedule=schedule, scheduled_for=NOW + MINUTE)

    assert dispatch_due_schedules(NOW + MINUTE) == 0

    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + 2 * MINUTE
    assert schedule.status == Schedule.Status.INACTIVE
    assert Delivery.objects.count() == 0


def test_missed_ticks_after_downtime_coalesce_into_one_run(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule()
    later = NOW + 10 * MINUTE + timedelta(seconds=30)  # ten ticks were missed

    assert dispatch_due_schedules(later) == 1

    assert runs_of(schedule) == [NOW + MINUTE]
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + 11 * MINUTE


def test_schedule_finishes_after_its_last_tick_before_the_end_date(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule(end_date=NOW + 2 * MINUTE + timedelta(seconds=30))

    dispatch_due_schedules(NOW + MINUTE)
    schedule.refresh_from_db()
    assert (schedule.status, schedule.next_run_at) == ("INACTIVE", NOW + 2 * MINUTE)

    dispatch_due_schedules(NOW + 2 * MINUTE)
    schedule.refresh_from_db()
    assert (schedule.status, schedule.next_run_at) == ("FINISHED", None)
    assert runs_of(schedule) == [NOW + MINUTE, NOW + 2 * MINUTE]
    assert dispatch_due_schedules(NOW + 10 * MINUTE) == 0


def test_nothing_fires_after_the_end_date_even_after_downtime(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule(end_date=NOW + 2 * MINUTE)

    assert dispatch_due_schedules(NOW + 3 * MINUTE) == 0

    schedule.refresh_from_db()
    assert (schedule.status, schedule.next_run_at) == ("FINISHED", None)
    assert (ScheduleRun.objects.count(), Delivery.objects.count()) == (0, 0)


def test_paused_schedule_does_not_fire_and_resume_sends_no_burst(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule()
    dispatch_due_schedules(NOW + MINUTE)
    schedule_pause(schedule=schedule)

    assert dispatch_due_schedules(NOW + 30 * MINUTE) == 0

    resumed_at = NOW + 60 * MINUTE + timedelta(seconds=20)
    with time_machine.travel(resumed_at, tick=False):
        schedule = schedule_resume(schedule=schedule)
    # It had fired before the pause, but its callback was never called.
    assert schedule.status == Schedule.Status.INACTIVE
    assert schedule.next_run_at == NOW + 61 * MINUTE
    assert dispatch_due_schedules(resumed_at) == 0  # the 59 missed ticks are not sent
    assert dispatch_due_schedules(NOW + 61 * MINUTE) == 1
    assert runs_of(schedule) == [NOW + MINUTE, NOW + 61 * MINUTE]


def test_run_now_fires_an_extra_callback_without_moving_the_next_run(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule(interval="0 * * * *")
    at = NOW + 10 * MINUTE

    run = schedule_run_now(schedule=schedule, now=at)

    assert run.scheduled_for == at
    assert run.delivery is not None
    assert run.delivery.payload == {"user": 12345}
    schedule.refresh_from_db()
    assert schedule.status == Schedule.Status.INACTIVE  # ACTIVE once the callback is called
    assert schedule.next_run_at == NOW + 60 * MINUTE


@pytest.mark.parametrize(
    ("interval", "zone", "start", "ticks"),
    [
        # New York spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 02:30 runs at 03:30 EDT.
        (
            "30 2 * * *",
            "America/New_York",
            datetime(2026, 3, 7, 12, tzinfo=UTC),
            ["2026-03-08T07:30:00+00:00", "2026-03-09T06:30:00+00:00"],
        ),
        # New York fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 runs once.
        (
            "30 1 * * *",
            "America/New_York",
            datetime(2026, 10, 31, 12, tzinfo=UTC),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"],
        ),
        # Prague fall back (2026-10-25 03:00 CEST -> 02:00 CET): 02:30 runs once.
        (
            "30 2 * * *",
            "Europe/Prague",
            datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"],
        ),
    ],
)
def test_timezone_schedule_fires_once_per_local_tick_across_dst(
    make_schedule: Callable[..., Schedule],
    interval: str,
    zone: str,
    start: datetime,
    ticks: list[str],
) -> None:
    schedule = make_schedule(
        interval=interval, tz_name=zone, now=start, end_date=start + timedelta(days=30)
    )
    # Run the scheduler every 10 minutes of real time over two days.
    at = start
    while at < start + timedelta(days=2, hours=1):
        dispatch_due_schedules(at)
        at += timedelta(minutes=10)

    assert [r.isoformat() for r in runs_of(schedule)] == ticks


@pytest.mark.django_db(transaction=True)
def test_callback_reaches_the_receiver_with_context_body_and_valid_signature(
    make_schedule: Callable[..., Schedule], receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    schedule = make_schedule(
        callback_url=receiver.url("/cb"),
        context={"user": 330, "nested": {"a": [1, "x"]}},
        now=now - timedelta(minutes=2),
        end_date=now + timedelta(days=1),
    )

    # Small bursts are handed to the sender on commit (inline here: no broker, no runner).
    assert dispatch_due_schedules(now) == 1

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/cb"
    assert json.loads(request.body) == {"user": 330, "nested": {"a": [1, "x"]}}
    headers = request.headers
    assert headers["content-type"].startswith("application/json")
    schedule.refresh_from_db()
    verified: Any = Webhook(schedule.endpoint.secret).verify(request.body, headers)
    assert verified == {"user": 330, "nested": {"a": [1, "x"]}}
    run = ScheduleRun.objects.select_related("delivery").get()
    assert run.delivery.status == Delivery.Status.SUCCEEDED
    assert headers["webhook-id"] == run.delivery.message_id
    assert schedule.status == Schedule.Status.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_big_bursts_are_left_to_the_delivery_dispatcher(
    make_schedule: Callable[..., Schedule], settings: Any
) -> None:
    settings.HERALD_SCHEDULE_ENQUEUE_MAX = 1
    for _ in range(3):
        make_schedule()

    assert dispatch_due_schedules(NOW + MINUTE) == 3

    assert Delivery.objects.filter(queued_until__isnull=True, status="pending").count() == 3


def test_run_now_twice_at_the_same_instant_is_a_409_and_sends_one_callback(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = make_schedule(interval="0 * * * *")
    at = NOW + 10 * MINUTE
    schedule_run_now(schedule=schedule, now=at)

    with pytest.raises(ConflictError):
        schedule_run_now(schedule=schedule, now=at)

    assert runs_of(schedule) == [at]
    assert Delivery.objects.filter(endpoint_id=schedule.endpoint_id).count() == 1


def test_run_now_of_a_paused_schedule_keeps_it_paused_and_gives_up_after_the_window(
    make_schedule: Callable[..., Schedule],
) -> None:
    schedule = schedule_pause(schedule=make_schedule(interval="0 * * * *"))
    at = NOW + 10 * MINUTE

    run = schedule_run_now(schedule=schedule, now=at)

    assert run.delivery is not None
    assert run.delivery.give_up_at == at + scheduler.FINAL_RUN_RETRY_WINDOW
    schedule.refresh_from_db()
    assert schedule.status == Schedule.Status.PAUSED
    assert schedule.next_run_at is None
    assert schedule.last_run_at == at
