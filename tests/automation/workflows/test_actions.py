"""Actions on real services: customers, tags, follow-up events (loop guard), waits
across a restart, failures, and webhooks handed to the delivery engine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from automation.due import due_events_process, due_events_process_and_run
from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import (
    automation_tick,
    workflow_run_advance,
)
from automation.workflows.selectors import active_workflows_forget
from customers.models import Customer
from events_app.models import Event

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def only_run() -> WorkflowRun:
    return WorkflowRun.objects.get()


def test_update_customer_merges_attributes_and_null_removes_a_key(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        actions=[{"type": "update_customer", "attributes": {"tier": "gold", "trial": None}}]
    )
    event = ingest()
    Customer.objects.filter(pk=event.customer_id).update(attributes={"trial": True, "x": 1})
    due_events_process_and_run(event_ids=[event.pk])
    assert Customer.objects.get(pk=event.customer_id).attributes == {"x": 1, "tier": "gold"}
    run = only_run()
    assert run.status == "succeeded"
    assert [(o["index"], o["type"], o["status"]) for o in run.outcomes] == [
        (0, "update_customer", "succeeded")
    ]


def test_add_and_remove_tags_keep_order_and_skip_duplicates(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        actions=[
            {"type": "add_tags", "tags": ["buyer", "vip", "buyer"]},
            {"type": "remove_tags", "tags": ["trial"]},
        ]
    )
    event = ingest()
    Customer.objects.filter(pk=event.customer_id).update(tags=["trial", "vip"])
    due_events_process_and_run(event_ids=[event.pk])
    assert Customer.objects.get(pk=event.customer_id).tags == ["vip", "buyer"]


def test_emit_event_ingests_a_follow_up_that_is_itself_evaluated(
    purchase: Any, login: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        name="emit",
        actions=[{"type": "emit_event", "event_type": "login", "data": {"source": "workflow"}}],
    )
    make_workflow(
        name="on login",
        trigger_event_types=["login"],
        actions=[{"type": "add_tags", "tags": ["seen"]}],
    )
    event = ingest()
    due_events_process_and_run(event_ids=[event.pk])
    follow_up = Event.objects.get(event_type=login)
    assert (follow_up.customer_id, follow_up.depth, follow_up.data) == (
        event.customer_id,
        1,
        {"source": "workflow"},
    )
    assert follow_up.automation_pending is True
    assert only_run().outcomes[0]["detail"] == {"event_id": follow_up.pk, "depth": 1}
    due_events_process_and_run(event_ids=[follow_up.pk])
    assert Customer.objects.get(pk=event.customer_id).tags == ["seen"]


def test_loop_guard_stops_a_self_triggering_chain_at_the_depth_limit(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    settings: Any,
) -> None:
    settings.HERALD_AUTOMATION_MAX_DEPTH = 3
    make_workflow(name="loop", actions=[{"type": "emit_event", "event_type": "purchase"}])
    pending = [ingest().pk]
    for _ in range(10):  # bounded: a broken guard would fail the count below
        due_events_process_and_run(event_ids=pending)
        pending = list(Event.objects.filter(automation_pending=True).values_list("pk", flat=True))
        if not pending:
            break
    assert sorted(Event.objects.values_list("depth", flat=True)) == [0, 1, 2, 3]
    last = WorkflowRun.objects.get(event__depth=3)
    assert last.status == "failed"
    assert last.error.startswith("actions[0] (emit_event): Loop guard: the event chain reached")
    assert WorkflowRun.objects.filter(status="succeeded").count() == 3


def test_failed_action_stops_the_run_and_rolls_back_only_itself(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(
        actions=[
            {"type": "add_tags", "tags": ["first"]},
            {
                "type": "emit_event",
                "event_type": "purchase",
                "property_records": [{"property_id": "amount", "property_value": "lots"}],
            },
            {"type": "add_tags", "tags": ["never"]},
        ]
    )
    event = ingest()
    due_events_process_and_run(event_ids=[event.pk])
    run = only_run()
    assert run.status == "failed"
    assert run.position == 1
    assert [o["status"] for o in run.outcomes] == ["succeeded", "failed"]
    assert "amount" in run.outcomes[1]["error"]
    assert Customer.objects.get(pk=event.customer_id).tags == ["first"]
    assert Event.objects.count() == 1
    assert run.workflow_id == workflow.pk


def test_wait_pauses_the_run_durably_and_resumes_after_a_restart(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        actions=[
            {"type": "add_tags", "tags": ["before"]},
            {"type": "wait", "duration": "PT2H"},
            {"type": "add_tags", "tags": ["after"]},
        ]
    )
    with time_machine.travel(T0, tick=False):
        event = ingest()
        due_events_process_and_run(event_ids=[event.pk])
    run = only_run()
    assert (run.status, run.position, run.resume_at) == ("waiting", 2, T0 + timedelta(hours=2))

    # "Restart": a new process with nothing in memory; only the row remains.
    active_workflows_forget()
    with time_machine.travel(T0 + timedelta(hours=1, minutes=59), tick=False):
        assert automation_tick() == 0
        workflow_run_advance(run_id=run.pk)  # an early, stray call changes nothing
    run.refresh_from_db()
    assert run.status == "waiting"
    assert Customer.objects.get(pk=event.customer_id).tags == ["before"]

    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert automation_tick() == 1
    run.refresh_from_db()
    assert (run.status, run.position, run.resume_at) == ("succeeded", 3, None)
    assert Customer.objects.get(pk=event.customer_id).tags == ["before", "after"]
    assert [o["type"] for o in run.outcomes] == ["add_tags", "wait", "add_tags"]


def test_advancing_a_finished_run_again_fires_nothing(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(actions=[{"type": "emit_event", "event_type": "purchase"}])
    due_events_process_and_run(event_ids=[ingest().pk])
    run = only_run()
    workflow_run_advance(run_id=run.pk)
    workflow_run_advance(run_id=run.pk)
    assert Event.objects.count() == 2
    assert len(WorkflowRun.objects.get(pk=run.pk).outcomes) == 1


def test_run_keeps_the_actions_it_matched_with_when_the_workflow_changes(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    from automation.workflows.services import WorkflowInput, workflow_update

    workflow = make_workflow(
        actions=[{"type": "wait", "duration": "PT1H"}, {"type": "add_tags", "tags": ["old"]}]
    )
    with time_machine.travel(T0, tick=False):
        event = ingest()
        due_events_process_and_run(event_ids=[event.pk])
    workflow_update(
        workflow=workflow, data=WorkflowInput(actions=[{"type": "add_tags", "tags": ["new"]}])
    )
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        automation_tick()
    assert Customer.objects.get(pk=event.customer_id).tags == ["old"]


@pytest.fixture
def loopback_allowed(settings: Any) -> None:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


def test_webhook_action_creates_a_delivery_to_a_workflow_endpoint(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    loopback_allowed: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow(actions=[{"type": "webhook", "url": "http://127.0.0.1:8599/hook"}])
    endpoint = Endpoint.objects.get()
    assert (endpoint.kind, endpoint.url) == ("workflow", "http://127.0.0.1:8599/hook")
    workflow.refresh_from_db()
    assert workflow.actions == [
        {"type": "webhook", "url": "http://127.0.0.1:8599/hook", "endpoint_id": endpoint.pk}
    ]
    event = ingest(records={"amount": "12"})
    with django_capture_on_commit_callbacks(execute=False):  # do not send it here
        due_events_process(event_ids=[event.pk])
        workflow_run_advance(run_id=only_run().pk)
    delivery = Delivery.objects.get()
    run = only_run()
    assert delivery.endpoint_id == endpoint.pk
    assert (delivery.event_id, delivery.customer_id) == (event.pk, event.customer_id)
    assert delivery.payload["type"] == "workflow.action"
    assert delivery.payload["workflow"] == {
        "workflow_id": workflow.pk,
        "name": "Big spenders",
        "version": 1,
    }
    assert delivery.payload["workflow_run_id"] == run.pk
    assert delivery.payload["event"]["event_id"] == event.pk
    assert delivery.payload["customer"]["external_id"] == "alice"
    assert run.outcomes[0]["detail"] == {"delivery_id": delivery.pk}


def test_webhook_to_a_private_address_is_refused_when_saving(
    purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    from project.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        make_workflow(actions=[{"type": "webhook", "url": "http://10.0.0.1/hook"}])
    assert list(caught.value.details or {}) == ["actions[0].url"]
    assert Workflow.objects.count() == 0
    assert Endpoint.objects.count() == 0
