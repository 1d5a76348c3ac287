"""The wake-up of the claimer with a real Redis broker and a real Celery worker: lost,
or not sent at all because the broker is down; the periodic claim does the work."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from automation.due import CLAIM_TASK
from automation.webhooks.models import Delivery
from automation.webhooks.services import endpoint_create
from automation.workflows.models import WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create
from events_app.models import Event
from project import background
from project.celery import all_queues, app
from tests.celery_worker import _reset_pool, celery_broker, celery_worker, wait_until
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory
from tests.receiver import Receiver, local_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with local_receiver() as r:
        yield r


@pytest.fixture
def automation_on(receiver: Receiver) -> str:
    """A subscription to the receiver and a workflow on `purchase`; the type's id."""
    purchase = EventTypeFactory(key="purchase")
    endpoint_create(url=receiver.url())
    workflow_create(
        data=WorkflowInput(
            name="every purchase", trigger_event_types=["purchase"], conditions={}, actions=[]
        )
    )
    return str(purchase.id)


@pytest.fixture(autouse=True)
def _breaker_closed() -> Iterator[None]:
    background.BREAKER.reset()
    yield
    background.BREAKER.reset()


def post_event(api: Any, type_id: str) -> str:
    customer = CustomerFactory()
    response = api.post(
        f"{API}/events",
        {"event": {"event_type_id": type_id, "customer_id": customer.id}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["data"]["event_id"])


@contextmanager
def broker_down() -> Iterator[None]:
    """This process's Celery app pointed at a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    keys = ("broker_url", "task_always_eager")
    saved = {key: app.conf.get(key) for key in keys}
    app.conf.update(broker_url=f"redis://127.0.0.1:{port}/0", task_always_eager=False)
    _reset_pool(app)
    try:
        yield
    finally:
        app.conf.update(saved)
        _reset_pool(app)


def queued(broker_queue: str) -> int:
    """Messages waiting on any of Herald's queues, `broker_queue` the default one (taken
    off them: they are counted once)."""
    with app.connection_for_write() as conn:
        return sum(
            int(conn.default_channel.queue_purge(queue) or 0) for queue in all_queues(broker_queue)
        )


def test_with_the_broker_down_posts_are_fast_and_the_work_runs_once_it_is_back(
    api: Any, automation_on: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="project.background")
    with broker_down():
        took = []
        for _ in range(5):
            started = time.perf_counter()
            post_event(api, automation_on)
            took.append(time.perf_counter() - started)

    # One failed attempt opened the breaker; the other requests did not try again.
    unreachable = [r for r in caplog.records if "Broker unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    assert sum(took) < 5 * 0.5, took  # no request waited for a connection
    assert Event.objects.filter(automation_pending=True).count() == 5
    assert (Delivery.objects.count(), WorkflowRun.objects.count()) == (0, 0)

    background.BREAKER.reset()  # its retry interval passed: the broker is back
    with celery_broker() as broker, celery_worker(broker):
        background.enqueue(background.RUN_PERIODIC, "due.claim")  # as beat sends it
        receiver.wait_for(5, timeout=60)
        wait_until(
            lambda: (
                WorkflowRun.objects.count() == 5
                and not Event.objects.filter(automation_pending=True).exists()
            ),
            timeout=60,
            what="the due work of the 5 events",
        )
    assert Delivery.objects.filter(status="succeeded").count() == 5
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 5


def test_a_lost_wake_up_is_recovered_by_the_periodic_claim(
    api: Any, automation_on: str, receiver: Receiver
) -> None:
    with celery_broker() as broker:
        background.wake(CLAIM_TASK)  # published ...
        assert queued(broker.queue) == 1  # ... and lost: its key stays taken
        event_id = post_event(api, automation_on)
        assert queued(broker.queue) == 0  # the request saw the wake-up taken: no publish
        assert Event.objects.get(pk=event_id).automation_pending is True

        with celery_worker(broker):
            background.enqueue(background.RUN_PERIODIC, "due.claim")  # as beat sends it
            (request,) = receiver.wait_for(1, timeout=60)
            run = wait_until(
                lambda: WorkflowRun.objects.filter(event_id=event_id).first(), what="the run"
            )

    delivery = Delivery.objects.get(event_id=event_id)
    assert request.headers["webhook-id"] == delivery.message_id
    assert run.status == "succeeded"
    assert Event.objects.get(pk=event_id).automation_pending is False


def test_events_posted_in_a_row_get_one_run_and_one_delivery_each_from_a_real_worker(
    api: Any, automation_on: str, receiver: Receiver
) -> None:
    with celery_broker() as broker, celery_worker(broker):
        event_ids = [post_event(api, automation_on) for _ in range(10)]
        receiver.wait_for(10, timeout=60)
        wait_until(
            lambda: (
                WorkflowRun.objects.count() == 10
                and not Event.objects.filter(automation_pending=True).exists()
            ),
            timeout=60,
            what="the due work of the 10 events",
        )
    assert sorted(Delivery.objects.values_list("event_id", flat=True)) == sorted(event_ids)
    assert sorted(WorkflowRun.objects.values_list("event_id", flat=True)) == sorted(event_ids)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 10
