"""Deleting or deactivating a workflow stops everything it set going: nothing more goes out.

Delete: its endpoints (with their secrets) and their deliveries are gone once DELETE
answers. Deactivate (API, PATCH, admin): its unfinished runs and its pending deliveries
are cancelled; re-activating starts afresh. Another workflow's work goes on throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from automation.webhooks.sender import deliver_one, dispatch_due_deliveries
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.runner import (
    automation_tick,
    workflow_run_advance,
)
from automation.workflows.services import workflow_delete, workflow_set_active
from customers.models import Customer
from events_app.models import Event
from tests.conftest import API
from tests.deletes import row_counts
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.django_db

URL = f"{API}/workflows"
TABLES = (Endpoint, WorkflowEndpoint, Delivery, DeliveryAttempt, WorkflowRun, Workflow)
DAY = timedelta(days=1)


def statuses(model: type[Delivery] | type[WorkflowRun], workflow: Workflow) -> list[str]:
    if model is Delivery:
        rows = Delivery.objects.filter(endpoint__workflow_link__workflow=workflow)
    else:
        rows = WorkflowRun.objects.filter(workflow=workflow)
    return sorted(rows.values_list("status", flat=True))


# ---------------------------------------------------------------- delete


def test_delete_removes_the_workflows_endpoints_and_deliveries_and_nothing_of_another(
    purchase: Any,
    allow_loopback: None,
    webhook_runs: Callable[..., list[tuple[Workflow, Delivery]]],
) -> None:
    (gone, gone_delivery), (kept, kept_delivery) = webhook_runs(
        "http://127.0.0.1:8599/gone", "http://127.0.0.1:8599/kept"
    )
    DeliveryAttempt.objects.create(
        delivery=gone_delivery, number=1, started_at=timezone.now(), outcome="retry"
    )
    assert row_counts(*TABLES) == {
        "automation.Endpoint": 2,
        "automation.WorkflowEndpoint": 2,
        "automation.Delivery": 2,
        "automation.DeliveryAttempt": 1,
        "automation.WorkflowRun": 2,
        "automation.Workflow": 2,
    }

    deleted = workflow_delete(workflow=gone)

    assert deleted == {
        "automation.Workflow": 1,
        "automation.Workflow_trigger_event_types": 1,
        "automation.WorkflowRun": 1,
        "automation.WorkflowEndpoint": 1,
        "automation.Endpoint": 1,
        "automation.Delivery": 1,
        "automation.DeliveryAttempt": 1,
    }
    assert row_counts(*TABLES) == {
        "automation.Endpoint": 1,
        "automation.WorkflowEndpoint": 1,
        "automation.Delivery": 1,
        "automation.DeliveryAttempt": 0,
        "automation.WorkflowRun": 1,
        "automation.Workflow": 1,
    }
    assert list(Endpoint.objects.values_list("pk", flat=True)) == [kept_delivery.endpoint_id]
    assert list(Delivery.objects.values_list("pk", "status")) == [(kept_delivery.pk, "pending")]
    assert Workflow.objects.get() == kept


def test_after_delete_answers_no_retry_reaches_the_receiver(
    purchase: Any,
    api: APIClient,
    receiver: Receiver,
    webhook_runs: Callable[..., list[tuple[Workflow, Delivery]]],
) -> None:
    receiver.reply(Reply(status=503))
    (gone, gone_delivery), (_kept, kept_delivery) = webhook_runs(
        receiver.url("/gone"), receiver.url("/kept")
    )
    assert deliver_one(gone_delivery.pk) == "failed"
    assert deliver_one(kept_delivery.pk) == "failed"
    assert [r.path for r in receiver.requests] == ["/gone", "/kept"]
    assert Delivery.objects.filter(status="pending").count() == 2  # both retry later

    response = api.delete(f"{URL}/{gone.pk}")

    assert response.status_code == 200
    assert "webhook_secrets" not in response.json()["data"]
    assert not Endpoint.objects.filter(pk=gone_delivery.endpoint_id).exists()
    assert not Delivery.objects.filter(pk=gone_delivery.pk).exists()
    with time_machine.travel(timezone.now() + DAY, tick=False):
        assert dispatch_due_deliveries() == 1  # the kept workflow's retry only
        assert deliver_one(gone_delivery.pk) == "not-due"
    assert [r.path for r in receiver.requests] == ["/gone", "/kept", "/kept"]


# ---------------------------------------------------------------- deactivate


@pytest.fixture
def waiting_webhook(
    purchase: Any,
    allow_loopback: None,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> Callable[[], tuple[Workflow, Workflow]]:
    """Two workflows that each sent a webhook (delivery pending) and wait a day before
    tagging the customer; the first is the one the tests stop."""

    def make() -> tuple[Workflow, Workflow]:
        workflows = tuple(
            make_workflow(
                name=name,
                actions=[
                    {"type": "webhook", "url": f"http://127.0.0.1:8599/{name}"},
                    {"type": "wait", "duration": "P1D"},
                    {"type": "add_tags", "tags": [name]},
                ],
            )
            for name in ("stopped", "running")
        )
        event = ingest()
        with django_capture_on_commit_callbacks(execute=False):
            for run_id in due_events_process(event_ids=[event.pk]).run_ids:
                workflow_run_advance(run_id=run_id)
        for workflow in workflows:
            assert statuses(WorkflowRun, workflow) == ["waiting"]
            assert statuses(Delivery, workflow) == ["pending"]
        return workflows[0], workflows[1]

    return make


def assert_stopped(stopped: Workflow, running: Workflow) -> None:
    assert statuses(WorkflowRun, stopped) == ["cancelled"]
    assert statuses(Delivery, stopped) == ["cancelled"]
    run = WorkflowRun.objects.get(workflow=stopped)
    # The webhook and the wait were done; the tagging never will be.
    assert (run.error, run.resume_at, run.position) == (
        "Cancelled: the workflow was deactivated.",
        None,
        2,
    )
    delivery = Delivery.objects.get(endpoint__workflow_link__workflow=stopped)
    assert delivery.next_attempt_at is None
    assert delivery.last_error == "Cancelled: the workflow was deactivated."
    assert statuses(WorkflowRun, running) == ["waiting"]
    assert statuses(Delivery, running) == ["pending"]


def test_deactivating_cancels_waiting_runs_and_pending_deliveries_and_nothing_more_runs(
    waiting_webhook: Callable[[], tuple[Workflow, Workflow]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    stopped, running = waiting_webhook()

    workflow_set_active(workflow=stopped, active=False)

    assert_stopped(stopped, running)
    assert Endpoint.objects.count() == 2  # kept, with its secret, for re-activation
    with (
        time_machine.travel(timezone.now() + 2 * DAY, tick=False),
        django_capture_on_commit_callbacks(execute=False),
    ):
        assert automation_tick() == 1  # the running workflow's wait only
    assert Customer.objects.get().tags == ["running"]


def test_patch_active_false_stops_the_workflow_like_deactivate(
    api: APIClient, waiting_webhook: Callable[[], tuple[Workflow, Workflow]]
) -> None:
    stopped, running = waiting_webhook()

    response = api.patch(f"{URL}/{stopped.pk}", {"workflow": {"active": False}}, format="json")

    assert response.status_code == 200
    assert_stopped(stopped, running)


def test_deactivate_endpoint_stops_the_workflow(
    api: APIClient, waiting_webhook: Callable[[], tuple[Workflow, Workflow]]
) -> None:
    stopped, running = waiting_webhook()

    assert api.post(f"{URL}/{stopped.pk}/deactivate").status_code == 200

    assert_stopped(stopped, running)


def test_admin_deactivate_action_stops_the_workflow(
    client: Client, waiting_webhook: Callable[[], tuple[Workflow, Workflow]]
) -> None:
    stopped, running = waiting_webhook()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw-for-tests"))

    response = client.post(
        "/admin/automation/workflow/", {"action": "deactivate", "_selected_action": [stopped.pk]}
    )

    assert response.status_code == 302
    assert_stopped(stopped, running)


def test_reactivating_starts_afresh_cancelled_runs_stay_cancelled(
    waiting_webhook: Callable[[], tuple[Workflow, Workflow]],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    stopped, running = waiting_webhook()
    workflow_set_active(workflow=stopped, active=False)

    workflow_set_active(workflow=stopped, active=True)
    event = ingest()
    with django_capture_on_commit_callbacks(execute=False):
        for run_id in due_events_process(event_ids=[event.pk]).run_ids:
            workflow_run_advance(run_id=run_id)

    assert statuses(WorkflowRun, stopped) == ["cancelled", "waiting"]
    assert statuses(Delivery, stopped) == ["cancelled", "pending"]
    assert statuses(WorkflowRun, running) == ["waiting", "waiting"]


def test_a_run_created_from_a_stale_copy_after_deactivation_is_cancelled_not_run(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    workflow = make_workflow(actions=[{"type": "add_tags", "tags": ["late"]}])
    event = ingest()
    with django_capture_on_commit_callbacks(execute=False):
        (run_id,) = due_events_process(event_ids=[event.pk]).run_ids
    # Another process deactivated it between the evaluation and the run's first step.
    Workflow.objects.filter(pk=workflow.pk).update(active=False)

    workflow_run_advance(run_id=run_id)

    run = WorkflowRun.objects.get()
    assert (run.status, run.position, run.error) == (
        "cancelled",
        0,
        "Cancelled: the workflow was deactivated.",
    )
    assert Customer.objects.get().tags == []


def test_admin_delete_confirmation_counts_the_endpoints_and_deliveries_that_go(
    client: Client,
    purchase: Any,
    allow_loopback: None,
    webhook_runs: Callable[..., list[tuple[Workflow, Delivery]]],
) -> None:
    ((workflow, _delivery),) = webhook_runs("http://127.0.0.1:8599/hook")
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw-for-tests"))
    url = f"/admin/automation/workflow/{workflow.pk}/delete/"

    page = client.get(url)
    client.post(url, {"post": "yes"})

    assert page.context["deleted_objects"][1:] == [
        "1 workflow runs",
        "0 simulations",
        "0 workflow backfills",
        "0 segment broadcasts",
        "1 endpoints",
        "1 deliveries",
        "0 delivery attempts",
    ]
    assert row_counts(Workflow, Endpoint, Delivery, WorkflowEndpoint) == {
        "automation.Workflow": 0,
        "automation.Endpoint": 0,
        "automation.Delivery": 0,
        "automation.WorkflowEndpoint": 0,
    }
