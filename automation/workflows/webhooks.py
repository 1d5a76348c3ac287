"""The webhook action's link to the delivery engine (automation.webhooks).

Each webhook action of a workflow gets an Endpoint of kind "workflow" when
the workflow is saved; its id is stored in the action (`endpoint_id`), so
every message the action sends is signed with that endpoint's secret and
retried, logged and SSRF-guarded like any other delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_check_url, endpoint_create
from automation.workflows.models import Workflow
from events_app.payloads import event_payload
from project.errors import ValidationFailed

if TYPE_CHECKING:
    from automation.workflows.actions import ActionContext


def url_error(url: Any) -> str | None:
    """Why a webhook URL cannot be used (not http(s), a private address…), or None."""
    if not isinstance(url, str) or not url:
        return "Must be an http(s) URL."
    try:
        endpoint_check_url(url)
    except ValidationFailed as exc:
        return exc.message
    return None


def _owner(workflow: Workflow) -> str:
    return f"workflow:{workflow.pk}"


def webhook_endpoints_sync(*, workflow: Workflow) -> None:
    """Give every webhook action an Endpoint of kind "workflow" for its URL.

    Reuses this workflow's endpoint for the same URL (so editing other
    actions keeps the signing secret); call inside the saving transaction.
    """
    hooks = [a for a in workflow.actions if a.get("type") == "webhook"]
    if not hooks:
        return
    mine = {
        e.url: e
        for e in Endpoint.objects.filter(kind=Endpoint.Kind.WORKFLOW, description=_owner(workflow))
    }
    changed = False
    for action in hooks:
        endpoint = mine.get(action["url"])
        if endpoint is None:
            endpoint, _ = endpoint_create(
                url=action["url"], description=_owner(workflow), kind=Endpoint.Kind.WORKFLOW
            )
            mine[endpoint.url] = endpoint
        if action.get("endpoint_id") != endpoint.pk:
            action["endpoint_id"] = endpoint.pk
            changed = True
    if changed:
        Workflow.objects.filter(pk=workflow.pk).update(actions=workflow.actions)


def webhook_secrets(*, workflow: Workflow) -> dict[str, str]:
    """endpoint id → signing secret of this workflow's webhook actions."""
    return dict(
        Endpoint.objects.filter(
            kind=Endpoint.Kind.WORKFLOW, description=_owner(workflow)
        ).values_list("pk", "secret")
    )


def webhook_payload(ctx: ActionContext) -> dict[str, Any]:
    from automation.workflows.selectors import customer_dict

    customer = customer_dict(ctx.customer)
    customer["created_at"] = ctx.customer.created_at.isoformat().replace("+00:00", "Z")
    return {
        "type": "workflow.action",
        "workflow": {
            "workflow_id": ctx.workflow.pk,
            "name": ctx.workflow.name,
            "version": ctx.run.workflow_version,
        },
        "workflow_run_id": ctx.run.pk,
        "action_index": ctx.run.position,
        "event": event_payload(ctx.event),
        "customer": customer,
    }


def webhook_send(*, ctx: ActionContext, spec: dict[str, Any]) -> str:
    """Create the delivery (sent after the run's transaction commits); returns its id."""
    from automation.workflows.actions import ActionFailed

    endpoint = Endpoint.objects.filter(pk=spec.get("endpoint_id")).first()
    if endpoint is None:
        raise ActionFailed("The webhook action has no endpoint (save the workflow again).")
    delivery = delivery_create(endpoint=endpoint, payload=webhook_payload(ctx), event=ctx.event)
    return delivery.pk
