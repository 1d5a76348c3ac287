"""End to end with a REAL Celery worker and Redis: a batch fires exactly the expected
runs; a worker SIGKILLed mid-batch loses nothing and fires nothing twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from django.db.models import Count
from django.utils import timezone
from rest_framework.test import APIClient

from automation.workflows.models import WorkflowRun
from automation.workflows.runner import workflow_runs_dispatch_due
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.ingestion import events_prepare, events_store
from events_app.models import Event, EventType, PropertyDefinition
from events_app.schemas import EventCreateIn
from project.background import RUN_PERIODIC, enqueue
from tests.celery_worker import celery_broker, celery_worker, wait_until
from tests.conftest import API

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def setup_workflow() -> None:
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    PropertyDefinition.objects.create(
        event_type=purchase, property_id="amount", value_type="number"
    )
    EventType.objects.create(key="followup", name="Follow-up")
    workflow_create(
        data=WorkflowInput(
            name="big purchase",
            trigger_event_types=["purchase"],
            conditions={"property": "amount", "op": "gte", "value": 100},
            actions=[
                {"type": "add_tags", "tags": ["big"]},
                {"type": "emit_event", "event_type": "followup", "data": {"from": "workflow"}},
            ],
        )
    )


def item(ref: str, customer: str, amount: int) -> dict[str, Any]:
    return {
        "event": {"event_type": "purchase", "customer_external_id": customer, "external_id": ref},
        "property_records": [{"property_id": "amount", "property_value": amount}],
    }


def unfinished() -> int:
    return (
        Event.objects.filter(automation_pending=True).count()
        + WorkflowRun.objects.filter(status__in=["pending", "waiting"]).count()
    )


def test_batch_through_the_api_fires_exactly_the_expected_runs_on_a_real_worker(
    api: APIClient,
) -> None:
    setup_workflow()
    events = [item(f"r{i}", f"c{i % 4}", 150 if i % 2 == 0 else 50) for i in range(20)]
    with celery_broker() as broker, celery_worker(broker):
        response = api.post(f"{API}/events/batch", {"events": events}, format="json")
        assert response.status_code in {200, 201, 207}, response.json()
        wait_until(
            lambda: (
                WorkflowRun.objects.filter(status="succeeded").count() == 10 and unfinished() == 0
            ),
            timeout=60,
            what="10 succeeded runs",
        )
    runs = WorkflowRun.objects.select_related("event")
    assert sorted(r.event.external_id for r in runs) == sorted(f"r{i}" for i in range(0, 20, 2))
    assert Event.objects.filter(event_type__key="followup", depth=1).count() == 10
    assert sorted(Customer.objects.values_list("external_id", "tags")) == [
        (f"c{i}", ["big"]) if i % 2 == 0 else (f"c{i}", []) for i in range(4)
    ]


def test_killed_worker_loses_no_evaluation_and_fires_no_action_twice(
    db: None, settings: Any
) -> None:
    small_claims = {"HERALD_AUTOMATION_BATCH_SIZE": "20"}  # the worker claims 20 at a time
    setup_workflow()
    total = 240  # every other one matches: 120 runs, 240 actions
    with celery_broker() as broker:
        items = [
            msgspec.convert(item(f"k{i}", f"k{i % 50}", 150 if i % 2 == 0 else 50), EventCreateIn)
            for i in range(total)
        ]
        prepared, invalid = events_prepare(items=items)
        assert not invalid
        events_store(prepared=prepared)  # commits; one wake-up goes to Redis
        # Solo pool: tasks run one at a time in the process that is killed.
        with celery_worker(broker, pool="solo", env=small_claims) as worker:
            wait_until(lambda: WorkflowRun.objects.count() >= 15, timeout=60, what="first runs")
            worker.kill()
        pending_at_kill = Event.objects.filter(automation_pending=True).count()
        assert pending_at_kill > 0, "the worker finished before the kill; nothing was tested"

        # A new worker; the periodic claim (sent as beat sends it) takes the events the
        # dead worker's wake-up left, the dispatcher (run here with a clock past the
        # grace period) the runs it held.
        with celery_worker(broker, pool="solo", env=small_claims):
            later = timezone.now() + timedelta(hours=1)
            for _ in range(200):  # bounded
                enqueue(RUN_PERIODIC, "due.claim")
                workflow_runs_dispatch_due(now=later)
                try:
                    wait_until(lambda: unfinished() == 0, timeout=3, what="all work done")
                    break
                except AssertionError:
                    continue
            assert unfinished() == 0

    runs = WorkflowRun.objects.all()
    assert runs.count() == total // 2
    assert set(runs.values_list("status", flat=True)) == {"succeeded"}
    # Each action exactly once per run: two outcomes each, one follow-up per run.
    assert all(len(run.outcomes) == 2 for run in runs)
    followups = Event.objects.filter(event_type__key="followup")
    assert followups.count() == total // 2
    assert WorkflowRun.objects.values("event").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert sorted(
        r.event.external_id for r in WorkflowRun.objects.select_related("event")
    ) == sorted(f"k{i}" for i in range(0, total, 2))
