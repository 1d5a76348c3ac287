"""The webhook action: a signed POST through the delivery engine (automation.webhooks).

Each distinct URL of a workflow's webhook actions gets an endpoint of kind
"workflow" when the workflow is saved, owned by the workflow through a
WorkflowEndpoint row; the endpoint's id is stored in the action (`endpoint_id`),
so every message the action sends is signed with that endpoint's secret and
retried, logged and SSRF-guarded like any other delivery. The delivery engine is
reached only through its services (endpoint_create, delivery_create, …).
"""

from __future__ import annotations

from typing import Any

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_check_url, endpoint_create
from automation.workflows.actions.base import Action, ActionContext, ActionFailed, ActionResult
from automation.workflows.models import Workflow, WorkflowEndpoint
from automation.workflows.selectors import customer_dict
from events_app.models import EventType
from events_app.payloads import event_payload
from events_app.selectors import event_property_records
from project.errors import ValidationFailed


def url_error(url: Any) -> str | None:
    """Why a webhook URL cannot be used (not http(s), a private address…), or None."""
    if not isinstance(url, str) or not url:
        return "Must be an http(s) URL."
    try:
        endpoint_check_url(url)
    except ValidationFailed as exc:
        return exc.message
    return None


def _every_action(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workflow's actions, those inside a split's branches included."""
    found = []
    for action in actions:
        found.append(action)
        if action.get("type") == "split":
            for branch in action["branches"]:
                found += branch["actions"]
    return found


def webhook_endpoints_sync(*, workflow: Workflow) -> None:
    """Give every webhook action of a workflow an endpoint of its own for its URL.

    Reuses the workflow's endpoint for the same URL (so editing other actions
    keeps the signing secret); call inside the saving transaction. Endpoints of
    URLs no longer used stay: runs already under way carry the old actions.
    """
    hooks = [a for a in _every_action(workflow.actions) if a.get("type") == "webhook"]
    if not hooks:
        return
    mine = {
        link.endpoint.url: link.endpoint
        for link in WorkflowEndpoint.objects.filter(workflow=workflow).select_related("endpoint")
    }
    changed = False
    for action in hooks:
        endpoint = mine.get(action["url"])
        if endpoint is None:
            endpoint, _ = endpoint_create(
                url=action["url"],
                description=f"Webhook action of workflow {workflow.pk}",
                kind=Endpoint.Kind.WORKFLOW,
            )
            WorkflowEndpoint.objects.create(workflow=workflow, endpoint=endpoint)
            mine[endpoint.url] = endpoint
        if action.get("endpoint_id") != endpoint.pk:
            action["endpoint_id"] = endpoint.pk
            changed = True
    if changed:
        Workflow.objects.filter(pk=workflow.pk).update(actions=workflow.actions)


def webhook_payload(ctx: ActionContext) -> dict[str, Any]:
    """The body a webhook action POSTs: what a receiver needs without calling back.

    `event` is the event as GET /events/{id} shows it; `event_type` (its key) and
    `property_records` (its property values, as stored) come beside it. A run no
    event started (a segment trigger, a broadcast) has `event` and `event_type` null,
    no property records, and says what started it in `trigger` (null otherwise).
    """
    customer = customer_dict(ctx.customer)
    customer["created_at"] = ctx.customer.created_at.isoformat().replace("+00:00", "Z")
    event = ctx.event
    return {
        "type": "workflow.action",
        "workflow": {
            "workflow_id": ctx.workflow.pk,
            "name": ctx.workflow.name,
            "version": ctx.run.workflow_version,
        },
        "workflow_run_id": ctx.run.pk,
        "action_index": ctx.run.position,
        "event_type": None
        if event is None
        else EventType.objects.filter(pk=event.event_type_id).values_list("key", flat=True).first(),
        "event": None if event is None else event_payload(event),
        "property_records": []
        if event is None
        else list(
            event_property_records(event=event)
            .order_by("property_id")
            .values("property_id", "property_value")
        ),
        "customer": customer,
        "trigger": ctx.run.trigger,
    }


class Webhook(Action):
    """POST a signed JSON payload (workflow, event, customer) through the delivery engine.

    The delivery is created in the run's transaction and sent after it commits;
    only an endpoint the run's workflow owns is used.
    """

    type = "webhook"
    fields = frozenset({"url", "endpoint_id"})
    required = frozenset({"url"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        problem = url_error(spec["url"])
        if problem:
            errors.setdefault("url", []).append(problem)

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        link = (
            WorkflowEndpoint.objects.select_related("endpoint")
            .filter(workflow_id=ctx.run.workflow_id, endpoint_id=spec.get("endpoint_id"))
            .first()
        )
        if link is None:
            raise ActionFailed("The webhook action has no endpoint (save the workflow again).")
        delivery = delivery_create(
            endpoint=link.endpoint,
            payload=webhook_payload(ctx),
            event=ctx.event,
            customer_id=ctx.run.customer_id,
        )
        return ActionResult({"delivery_id": delivery.pk})
