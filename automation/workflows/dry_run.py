"""The dry run: POST /workflows/{id}/test explains a workflow for an event, firing nothing.

A stored event is evaluated with the facts a worker would read now; an inline
one (validated like an ingested event, never stored) with its own property
records and the customer's stored history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.engine import EventContext, Explanation, evaluate
from automation.workflows.models import Workflow
from automation.workflows.policies.services import policy_preview
from automation.workflows.selectors import LoadedWorkflow, batch_contexts, customer_dict
from customers.models import Customer
from events_app.models import Event, EventType
from project.errors import ValidationFailed


def workflow_test(
    *, workflow: Workflow, event: Event, now: datetime | None = None
) -> dict[str, Any]:
    """The explanation for an event (stored or unsaved), firing nothing.

    The facts (counts, first-time) are read as a worker would read them now.
    """
    now = now or timezone.now()
    loaded = LoadedWorkflow.of(workflow, type_ids=dict(EventType.objects.values_list("key", "id")))
    explanation = _explain(loaded, event, now)
    triggers = {t.pk for t in workflow.trigger_event_types.all()}
    return {
        "workflow_id": workflow.pk,
        "event_id": event.pk if event.pk and not event._state.adding else None,
        "triggered": event.event_type_id in triggers,
        "matched": explanation.matched and event.event_type_id in triggers,
        "conditions_matched": explanation.matched,
        "leaves": [leaf.as_dict() for leaf in explanation.leaves],
        "actions": [spec.get("type") for spec in workflow.actions if spec.get("type") in ACTIONS],
        "policy": _policy_verdicts(workflow, event, now),
        "evaluated_at": now.isoformat().replace("+00:00", "Z"),
    }


def _policy_verdicts(workflow: Workflow, event: Event, now: datetime) -> dict[str, Any] | None:
    """What the workflow's delivery policy would do now with each action for the event's
    customer (null without a policy)."""
    if workflow.delivery_policy is None:
        return None
    return policy_preview(
        policy=workflow.delivery_policy,
        actions=workflow.actions,
        customer=Customer.objects.get(pk=event.customer_id),
        now=now,
    )


def _explain(loaded: LoadedWorkflow, event: Event, now: datetime) -> Explanation:
    if not event._state.adding:
        by_type = {event.event_type_id: [loaded]}
        context = batch_contexts(events=[event], workflows_by_type=by_type, now=now)[event.pk]
    else:
        context = inline_context(
            event=event, loaded=loaded, now=now, records=getattr(event, "inline_records", [])
        )
    return evaluate(loaded.compiled, context)


def inline_context(
    *, event: Event, loaded: LoadedWorkflow, now: datetime, records: list[tuple[str, str]]
) -> EventContext:
    """Context for an unsaved event: its own records; facts from the stored history."""
    from automation.workflows.selectors import (
        event_dict,
        first_event_ids,
        frequency_counts,
    )
    from events_app.models import PropertyDefinition

    customer = Customer.objects.get(pk=event.customer_id)
    declared = dict(
        PropertyDefinition.objects.filter(event_type_id=event.event_type_id).values_list(
            "property_id", "value_type"
        )
    )
    counts = {
        key: frequency_counts(key=key, customer_ids={customer.pk}, now=now)[customer.pk]
        for key in loaded.compiled.count_keys
    }
    # The inline event is not stored: it is the first of its type when the
    # customer has none, and counts as one more occurrence of its own type.
    for key in counts:
        if key.event_type_id == event.event_type_id and now - key.within < event.occurred_at <= now:
            counts[key] += 1
    firsts = {
        type_id: type_id == event.event_type_id
        and first_event_ids(event_type_id=type_id, customer_ids={customer.pk})[customer.pk] is None
        for type_id in loaded.compiled.first_types
    }
    type_key = EventType.objects.filter(pk=event.event_type_id).values_list("key", flat=True)
    return EventContext(
        event=event_dict(event, type_key.first() or ""),
        customer=customer_dict(customer),
        properties=dict(records),
        property_types=declared,
        counts=counts,
        first_of_type=firsts,
        now=now,
    )


def workflow_test_request(
    *,
    workflow: Workflow,
    event_id: str | None,
    event: Any | None,
    property_records: list[Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """POST /workflows/{id}/test: a stored event by id, or an inline one (never stored).

    The inline event is validated like an ingested one, but its customer must
    exist already: a dry run creates nothing.
    """
    import msgspec

    from events_app.ingestion import events_prepare
    from events_app.schemas import EventCreateIn
    from events_app.selectors import event_get

    if (event_id is None) == (event is None):
        raise ValidationFailed(
            "Give exactly one of event_id or event.",
            details={"event_id": ["Give exactly one of event_id or event."]},
        )
    if event_id is not None:
        if property_records:
            raise ValidationFailed(
                "property_records go with an inline event, not with event_id.",
                details={"property_records": ["Only with an inline event."]},
            )
        return workflow_test(workflow=workflow, event=event_get(event_id=event_id), now=now)
    assert event is not None
    customer_id = event.customer_id
    if event.customer_external_id:
        customer_id = (
            Customer.objects.filter(external_id=event.customer_external_id)
            .values_list("pk", flat=True)
            .first()
        )
        if customer_id is None:
            raise ValidationFailed(
                f"Unknown customer '{event.customer_external_id}'.",
                details={"event.customer_external_id": ["A test needs an existing customer."]},
            )
    # The ref is irrelevant to a dry run; keeping it would report "already exists".
    inline = msgspec.structs.replace(
        event, customer_id=customer_id, customer_external_id=None, external_id=None
    )
    prepared, invalid = events_prepare(
        items=[EventCreateIn(event=inline, property_records=property_records)]
    )
    if invalid:
        raise ValidationFailed(invalid[0].error, details=invalid[0].details)
    ready = prepared[0]
    unsaved = Event(
        id=ready.id,
        event_type_id=ready.event_type_id,
        customer_id=ready.customer_id,
        external_id=event.external_id,
        secondary_external_id=ready.secondary_external_id,
        data=ready.data,
        occurred_at=ready.occurred_at,
        created_at=ready.created_at,
    )
    unsaved.inline_records = ready.records  # type: ignore[attr-defined]
    return workflow_test(workflow=workflow, event=unsaved, now=now)
