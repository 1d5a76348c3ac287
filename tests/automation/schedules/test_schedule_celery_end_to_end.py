"""End to end: scheduler -> Celery (real worker, real Redis) -> signed callback at a receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from automation.delivery import dispatch_due_deliveries
from automation.models import Delivery, Schedule, ScheduleRun
from automation.scheduler import dispatch_due_schedules
from tests.celery_worker import celery_broker, celery_worker
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def own_redis_dbs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_TEST_REDIS_DBS", "4,5,6")  # this area's Redis databases


def wait_for_succeeded(count: int, timeout: float = 30.0) -> None:
    """The worker records outcomes in its own process: poll the rows it writes."""
    deadline = time.monotonic() + timeout
    while Delivery.objects.filter(status="succeeded").count() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} deliveries did not succeed in {timeout} s")
        time.sleep(0.1)


def due_schedule(make_schedule: Callable[..., Schedule], receiver: Receiver, n: int) -> Schedule:
    now = datetime.now(UTC)
    return make_schedule(
        callback_url=receiver.url(f"/cb/{n}"),
        context={"schedule": n},
        now=now - timedelta(minutes=2),
        end_date=now + timedelta(days=1),
    )


def test_callback_is_sent_by_a_celery_worker_and_signed(
    make_schedule: Callable[..., Schedule], receiver: Receiver
) -> None:
    schedule = due_schedule(make_schedule, receiver, 1)

    with celery_broker() as broker, celery_worker(broker) as worker:
        assert dispatch_due_schedules() == 1  # handed to the worker on commit
        (request,) = receiver.wait_for(1, timeout=30)
        wait_for_succeeded(1)

    assert "deliver_one" in worker.log()
    assert json.loads(request.body) == {"schedule": 1}
    assert Webhook(schedule.endpoint.secret).verify(request.body, request.headers) == {
        "schedule": 1
    }
    run = ScheduleRun.objects.select_related("delivery").get()
    assert run.delivery.status == Delivery.Status.SUCCEEDED
    assert request.headers["webhook-id"] == run.delivery.message_id


def test_a_burst_left_to_the_delivery_dispatcher_is_sent_by_the_worker(
    make_schedule: Callable[..., Schedule], receiver: Receiver, settings: Any
) -> None:
    settings.HERALD_SCHEDULE_ENQUEUE_MAX = 1
    for n in range(3):
        due_schedule(make_schedule, receiver, n)

    with celery_broker() as broker, celery_worker(broker):
        assert dispatch_due_schedules() == 3
        assert receiver.requests == []  # nothing enqueued by the scheduler itself
        assert dispatch_due_deliveries() == 3
        requests = receiver.wait_for(3, timeout=30)
        wait_for_succeeded(3)

    assert sorted(json.loads(r.body)["schedule"] for r in requests) == [0, 1, 2]
