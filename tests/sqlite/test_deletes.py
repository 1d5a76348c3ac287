"""Deletes through the API: set-based cascades (one statement per table) on either
database, and the event counters following a customer's erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.privacy import REDACTED_PAYLOAD
from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from customers.models import Customer
from events_app.models import Event, EventType, PropertyRecord
from project.background import run_job
from tests.conftest import API
from tests.receiver import Receiver
from tests.sqlite.conftest import AfterCommit, get, ok, post, purchase_item

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MODELS = (
    Customer,
    Event,
    PropertyRecord,
    Delivery,
    DeliveryAttempt,
    Endpoint,
    Workflow,
    WorkflowRun,
    Schedule,
    ScheduleRun,
)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def delete(api: APIClient, path: str) -> Any:
    return api.delete(f"{API}{path}")


@pytest.fixture
def history(
    api: APIClient, purchase: str, receiver: Receiver, after_commit: AfterCommit
) -> dict[str, str]:
    """Alice (3 purchases) and bob (1), each event with a record, a delivered webhook
    delivery and a run of a workflow that waits; a schedule with one fired run."""
    webhook = ok(post(api, "/webhooks", {"webhook": {"url": receiver.url("/hook")}}), 201)
    workflow = ok(
        post(
            api,
            "/workflows",
            {
                "workflow": {
                    "name": "Wait",
                    "trigger_event_types": ["purchase"],
                    "conditions": {},
                    "actions": [
                        {"type": "wait", "duration": "PT1H"},
                        {"type": "add_tags", "tags": ["x"]},
                    ],
                }
            },
        ),
        201,
    )
    items = [purchase_item(c) for c in ("alice", "alice", "alice", "bob")]
    with time_machine.travel(T0, tick=False) as clock:
        with after_commit():
            data = ok(post(api, "/events/batch", {"events": items}))
        schedule = ok(
            post(
                api,
                "/schedules",
                {
                    "schedule": {
                        "owner": "o@example.com",
                        "end_date": "2026-03-03T00:00:00Z",
                        "interval": "* * * * *",
                        "callback_url": receiver.url("/schedule"),
                    }
                },
            ),
            201,
        )
        clock.move_to(T0 + timedelta(minutes=1))
        with after_commit():
            assert run_job("schedules.dispatch") == 1
    receiver.wait_for(5)
    assert counts() == {
        "Customer": 2,
        "Event": 4,
        "PropertyRecord": 4,
        "Delivery": 5,
        "DeliveryAttempt": 5,
        "Endpoint": 2,
        "Workflow": 1,
        "WorkflowRun": 4,
        "Schedule": 1,
        "ScheduleRun": 1,
    }
    assert WorkflowRun.objects.filter(status="waiting").count() == 4
    return {
        "alice": data["valid_events"][0]["customer_id"],
        "bob": data["valid_events"][3]["customer_id"],
        "webhook": webhook["webhook_id"],
        "workflow": workflow["workflow_id"],
        "schedule": schedule["schedule_id"],
    }


def test_customer_delete_takes_their_events_and_all_that_hangs_off_them(api, history):
    before = counts()

    ok(delete(api, f"/customers/{history['alice']}"))

    # Her deliveries stay as redacted rows (automation.privacy), with their attempts.
    assert counts() == {
        **before,
        "Customer": 1,
        "Event": 1,
        "PropertyRecord": 1,
        "WorkflowRun": 1,
    }
    assert Delivery.objects.filter(payload=REDACTED_PAYLOAD).count() == 3
    assert Event.objects.get().customer_id == history["bob"]
    assert ok(get(api, "/events"))["total_items"] == 1
    assert (
        ok(get(api, "/events", {"event_type_id": EventType.objects.get().pk}))["total_items"] == 1
    )
    assert delete(api, f"/customers/{history['alice']}").status_code == 404


def test_workflow_delete_takes_its_runs_and_waiting_runs_never_resume(api, history, after_commit):
    before = counts()

    ok(delete(api, f"/workflows/{history['workflow']}"))
    with time_machine.travel(T0 + timedelta(hours=2), tick=False), after_commit():
        handed_on = run_job("workflows.tick")

    assert handed_on == 0
    assert counts() == {**before, "Workflow": 0, "WorkflowRun": 0}
    assert list(Customer.objects.values_list("tags", flat=True)) == [[], []]


def test_webhook_delete_takes_its_deliveries_and_their_attempts(api, history):
    before = counts()

    ok(delete(api, f"/webhooks/{history['webhook']}"))

    assert counts() == {**before, "Endpoint": 1, "Delivery": 1, "DeliveryAttempt": 1}
    assert Delivery.objects.get().endpoint.kind == "schedule"
    assert Event.objects.count() == 4


def test_schedule_delete_takes_its_runs_endpoint_and_deliveries(api, history):
    before = counts()

    ok(delete(api, f"/schedules/{history['schedule']}"))

    assert counts() == {
        **before,
        "Schedule": 0,
        "ScheduleRun": 0,
        "Endpoint": 1,
        "Delivery": 4,
        "DeliveryAttempt": 4,
    }


def test_event_type_with_events_is_not_deleted(api, history):
    before = counts()

    response = delete(api, f"/event-types/{EventType.objects.get().pk}")

    assert response.status_code == 409
    assert counts() == before
    assert EventType.objects.count() == 1
