"""The webhook action's endpoints: owned by their workflow (WorkflowEndpoint), linked for
existing data by a reversible migration, and the body a receiver gets."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.utils import timezone

from automation.due import due_events_process
from automation.webhooks.models import Delivery, Endpoint
from automation.webhooks.sender import deliver_one
from automation.webhooks.services import endpoint_create
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.runner import workflow_run_advance
from automation.workflows.selectors import active_workflows_forget
from automation.workflows.services import WorkflowInput, workflow_update
from events_app.models import Event
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

HOOK = "http://127.0.0.1:8599/hook"
OTHER = "http://127.0.0.1:8599/other"


def owned(workflow: Workflow) -> list[tuple[str, str]]:
    return sorted(
        WorkflowEndpoint.objects.filter(workflow=workflow).values_list(
            "endpoint__url", "endpoint__kind"
        )
    )


def test_each_webhook_url_gets_one_endpoint_owned_by_the_workflow(
    purchase: Any, allow_loopback: None, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow(
        actions=[
            {"type": "webhook", "url": HOOK},
            {"type": "add_tags", "tags": ["x"]},
            {"type": "webhook", "url": OTHER},
            {"type": "webhook", "url": HOOK},
        ]
    )

    assert owned(workflow) == [(HOOK, "workflow"), (OTHER, "workflow")]
    by_url = dict(Endpoint.objects.values_list("url", "pk"))
    workflow.refresh_from_db()
    assert [a.get("endpoint_id") for a in workflow.actions] == [
        by_url[HOOK],
        None,
        by_url[OTHER],
        by_url[HOOK],
    ]


def test_editing_other_actions_keeps_the_endpoint_and_its_secret(
    purchase: Any, allow_loopback: None, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow(actions=[{"type": "webhook", "url": HOOK}])
    endpoint = Endpoint.objects.get()

    workflow_update(
        workflow=workflow,
        data=WorkflowInput(
            actions=[{"type": "add_tags", "tags": ["x"]}, {"type": "webhook", "url": HOOK}]
        ),
    )

    assert list(Endpoint.objects.values_list("pk", "secret")) == [(endpoint.pk, endpoint.secret)]
    assert WorkflowEndpoint.objects.count() == 1


def test_an_endpoint_merely_described_as_the_workflows_is_not_its_own(
    purchase: Any, allow_loopback: None, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow(actions=[])
    impostor, _ = endpoint_create(url=HOOK, description=f"workflow:{workflow.pk}", kind="workflow")

    workflow_update(
        workflow=workflow, data=WorkflowInput(actions=[{"type": "webhook", "url": HOOK}])
    )

    (link,) = WorkflowEndpoint.objects.filter(workflow=workflow)
    assert link.endpoint_id != impostor.pk
    assert Endpoint.objects.count() == 2


def test_a_webhook_action_naming_another_workflows_endpoint_fails_and_sends_nothing(
    purchase: Any,
    allow_loopback: None,
    webhook_runs: Callable[..., list[tuple[Workflow, Delivery]]],
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    (mine, _), (_theirs, their_delivery) = webhook_runs(HOOK, OTHER)
    spoofed = [{"type": "webhook", "url": HOOK, "endpoint_id": their_delivery.endpoint_id}]
    # Bypassing the services (which would give the action an endpoint of its own).
    Workflow.objects.filter(pk=mine.pk).update(actions=spoofed, updated_at=timezone.now())
    active_workflows_forget()
    event = ingest()
    with django_capture_on_commit_callbacks(execute=False):
        for run_id in due_events_process(event_ids=[event.pk]).run_ids:
            workflow_run_advance(run_id=run_id)

    run = WorkflowRun.objects.get(workflow=mine, event=event)
    assert (run.status, run.error) == (
        "failed",
        "actions[0] (webhook): The webhook action has no endpoint (save the workflow again).",
    )
    assert Delivery.objects.filter(event=event, endpoint_id=their_delivery.endpoint_id).count() == 1


def test_the_delivered_body_carries_the_event_type_key_and_the_property_values(
    purchase: Any,
    receiver: Receiver,
    webhook_runs: Callable[..., list[tuple[Workflow, Delivery]]],
) -> None:
    ((workflow, delivery),) = webhook_runs(receiver.url("/hook"))

    assert deliver_one(delivery.pk) == "succeeded"

    (request,) = receiver.requests
    body = json.loads(request.body)
    run = WorkflowRun.objects.get()
    assert body["event_type"] == "purchase"
    assert body["property_records"] == [
        {"property_id": "amount", "property_value": "12"},
        {"property_id": "sku", "property_value": "SKU-1"},
    ]
    # Every field the body had before is still there.
    assert body["type"] == "workflow.action"
    assert body["workflow"] == {"workflow_id": workflow.pk, "name": "hook 0", "version": 1}
    assert (body["workflow_run_id"], body["action_index"]) == (run.pk, 0)
    assert body["event"]["event_id"] == run.event_id
    assert body["event"]["event_type_id"] == purchase.pk
    assert body["customer"]["external_id"] == "alice"
    assert body["trigger"] is None  # an event started the run
    assert sorted(body) == [
        "action_index",
        "customer",
        "event",
        "event_type",
        "property_records",
        "trigger",
        "type",
        "workflow",
        "workflow_run_id",
    ]


# ---------------------------------------------------------------- the data migration

MIGRATION = importlib.import_module("automation.migrations.0009_link_workflow_endpoints")


def test_the_migration_links_workflow_endpoints_by_their_old_description_and_reverses(
    purchase: Any, allow_loopback: None, make_workflow: Callable[..., Workflow]
) -> None:
    first, second = make_workflow(name="first"), make_workflow(name="second")
    theirs, _ = endpoint_create(url=HOOK, description=f"workflow:{first.pk}", kind="workflow")
    also, _ = endpoint_create(url=OTHER, description=f"workflow:{first.pk}", kind="workflow")
    seconds, _ = endpoint_create(url=HOOK, description=f"workflow:{second.pk}", kind="workflow")
    orphan, _ = endpoint_create(url=HOOK, description="workflow:gone-long-ago", kind="workflow")
    subscription, _ = endpoint_create(url=HOOK, description=f"workflow:{first.pk}")
    assert WorkflowEndpoint.objects.count() == 0

    MIGRATION.link(apps, None)

    links = sorted(WorkflowEndpoint.objects.values_list("endpoint_id", "workflow_id"))
    assert links == sorted([(theirs.pk, first.pk), (also.pk, first.pk), (seconds.pk, second.pk)])
    MIGRATION.link(apps, None)  # run twice: nothing more
    assert WorkflowEndpoint.objects.count() == 3

    Endpoint.objects.filter(pk__in=[theirs.pk, seconds.pk]).update(description="renamed")
    MIGRATION.unlink(apps, None)

    assert WorkflowEndpoint.objects.count() == 0
    assert dict(Endpoint.objects.values_list("pk", "description")) == {
        theirs.pk: f"workflow:{first.pk}",
        also.pk: f"workflow:{first.pk}",
        seconds.pk: f"workflow:{second.pk}",
        orphan.pk: "workflow:gone-long-ago",
        subscription.pk: f"workflow:{first.pk}",
    }
