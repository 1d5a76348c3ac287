"""End to end: scheduler -> Celery (real worker, real Redis) -> signed callback at a receiver."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.scheduler import dispatch_due_schedules
from automation.webhooks.models import Delivery
from automation.webhooks.sender import dispatch_due_deliveries
from tests.celery_worker import celery_broker, celery_worker, wait_until
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_for_succeeded(count: int, timeout: float = 30.0) -> None:
    """The worker records outcomes in its own process: poll the rows it writes."""
    wait_until(
        lambda: Delivery.objects.filter(status="succeeded").count() >= count,
        timeout=timeout,
        what=f"{count} succeeded deliveries",
    )


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
