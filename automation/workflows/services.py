"""Writes for workflows: create, update, delete, (de)activate, and the dry-run test.

Every write validates the whole workflow (trigger types, condition tree,
actions, re-entry policy) and reports each problem at its path
(`conditions.all[2].op`, `actions[1].duration`), then bumps `version` and
`updated_at`, which is how every worker process notices its cached copy of
the active workflows is stale (automation.workflows.selectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.actions import validate_actions
from automation.workflows.conditions import trees as condition_trees
from automation.workflows.durations import parse_duration
from automation.workflows.engine import EventContext, Explanation, evaluate
from automation.workflows.models import Workflow
from automation.workflows.selectors import (
    LoadedWorkflow,
    active_workflows_forget,
    batch_contexts,
    customer_dict,
)
from customers.models import Customer
from events_app.models import Event, EventType
from project.cascade import cascade_delete_object
from project.errors import ValidationFailed

WRITABLE = ("name", "trigger_event_types", "conditions", "actions", "active", "reentry")


@dataclass
class WorkflowInput:
    """A workflow as a client describes it; unset fields (None) keep their value on update."""

    name: str | None = None
    trigger_event_types: list[str] | None = None
    conditions: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    active: bool | None = None
    reentry: str | None = None


def _resolve_types(refs: list[str], errors: dict[str, list[str]]) -> list[EventType]:
    if not refs:
        errors.setdefault("trigger_event_types", []).append("Give at least one event type.")
        return []
    found = {t for t in EventType.objects.filter(Q(key__in=refs) | Q(pk__in=refs))}
    by_ref = {**{t.key: t for t in found}, **{t.pk: t for t in found}}
    types: list[EventType] = []
    for index, ref in enumerate(refs):
        if ref not in by_ref:
            errors.setdefault(f"trigger_event_types[{index}]", []).append(
                f"Unknown event type {ref!r} (give a key or an id)."
            )
        elif by_ref[ref] not in types:
            types.append(by_ref[ref])
    return types


def _check_reentry(value: str, errors: dict[str, list[str]]) -> None:
    if value in {Workflow.EVERY_EVENT, Workflow.ONCE_PER_CUSTOMER}:
        return
    if value.startswith(Workflow.PER_PREFIX):
        try:
            parse_duration(value.removeprefix(Workflow.PER_PREFIX))
        except ValueError as exc:
            errors.setdefault("reentry", []).append(f"Period {exc}.")
        return
    errors.setdefault("reentry", []).append(
        "Must be every_event, once_per_customer or once_per_customer_per:<ISO 8601 duration> "
        "(e.g. once_per_customer_per:P7D)."
    )


def _check_tree_types(tree: dict[str, Any], errors: dict[str, list[str]]) -> None:
    """count / first leaves must name event types that exist."""
    refs = set()
    for leaf in condition_trees.iter_leaves(tree):
        if "count" in leaf:
            refs.add(leaf["count"]["event_type"])
        elif "first" in leaf:
            refs.add(leaf["first"])
    if not refs:
        return
    known = set()
    for pk, key in EventType.objects.filter(Q(key__in=refs) | Q(pk__in=refs)).values_list(
        "pk", "key"
    ):
        known.update({pk, key})
    missing = sorted(refs - known)
    if missing:
        errors.setdefault("conditions", []).append(
            f"Unknown event type(s) in count/first conditions: {', '.join(missing)}."
        )


def workflow_validate(data: WorkflowInput) -> tuple[dict[str, list[str]], list[EventType]]:
    """Every problem of a (complete) workflow, by path; and its resolved trigger types."""
    errors: dict[str, list[str]] = {}
    if not data.name or not data.name.strip():
        errors.setdefault("name", []).append("Must not be blank.")
    elif len(data.name) > 200:
        errors.setdefault("name", []).append("Must be at most 200 characters.")
    types = _resolve_types(data.trigger_event_types or [], errors)
    try:
        condition_trees.validate(data.conditions if data.conditions is not None else {})
    except condition_trees.ConditionError as exc:
        for path, messages in exc.errors.items():
            errors.setdefault(path, []).extend(messages)
    else:
        _check_tree_types(data.conditions or {}, errors)
    for path, messages in validate_actions(data.actions or []).items():
        errors.setdefault(path, []).extend(messages)
    _check_reentry(data.reentry or Workflow.EVERY_EVENT, errors)
    return errors, types


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid workflow: {path}: {messages[0]}", details=errors)


def _after_write(workflow: Workflow) -> None:
    from automation.workflows.webhooks import webhook_endpoints_sync

    webhook_endpoints_sync(workflow=workflow)
    # This process sees its own change at once; others through the stamp.
    transaction.on_commit(active_workflows_forget)


def workflow_create(*, data: WorkflowInput) -> Workflow:
    """Validate and store a workflow (active unless said otherwise)."""
    errors, types = workflow_validate(data)
    _raise_if(errors)
    with transaction.atomic():
        workflow = Workflow.objects.create(
            name=data.name.strip() if data.name else "",
            conditions=data.conditions or {},
            actions=data.actions or [],
            active=True if data.active is None else data.active,
            reentry=data.reentry or Workflow.EVERY_EVENT,
        )
        workflow.trigger_event_types.set(types)
        _after_write(workflow)
    return workflow


def workflow_update(*, workflow: Workflow, data: WorkflowInput) -> Workflow:
    """Change the given fields; the result is validated as a whole."""
    merged = WorkflowInput(
        name=workflow.name if data.name is None else data.name,
        trigger_event_types=(
            [t.pk for t in workflow.trigger_event_types.all()]
            if data.trigger_event_types is None
            else data.trigger_event_types
        ),
        conditions=workflow.conditions if data.conditions is None else data.conditions,
        actions=workflow.actions if data.actions is None else data.actions,
        active=workflow.active if data.active is None else data.active,
        reentry=workflow.reentry if data.reentry is None else data.reentry,
    )
    errors, types = workflow_validate(merged)
    _raise_if(errors)
    with transaction.atomic():
        workflow.name = (merged.name or "").strip()
        workflow.conditions = merged.conditions or {}
        workflow.actions = merged.actions or []
        workflow.active = bool(merged.active)
        workflow.reentry = merged.reentry or Workflow.EVERY_EVENT
        workflow.version = F("version") + 1
        workflow.save()
        workflow.refresh_from_db(fields=["version"])
        workflow.trigger_event_types.set(types)
        _after_write(workflow)
    return workflow


def workflow_set_active(*, workflow: Workflow, active: bool) -> Workflow:
    """Activate or deactivate; runs already waiting go on (they matched while active)."""
    with transaction.atomic():
        Workflow.objects.filter(pk=workflow.pk).update(
            active=active, version=F("version") + 1, updated_at=timezone.now()
        )
        workflow.refresh_from_db()
        transaction.on_commit(active_workflows_forget)
    return workflow


def workflow_delete(*, workflow: Workflow) -> dict[str, int]:
    """Delete a workflow with its runs (waiting runs never resume); rows deleted per model.

    Set-based (project.cascade): a workflow can have millions of runs, which
    Django's Collector would load first; here each table is one statement.
    """
    with transaction.atomic():
        deleted = cascade_delete_object(workflow)
        transaction.on_commit(active_workflows_forget)
    return deleted


# ---------------------------------------------------------------- dry run


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
        "evaluated_at": now.isoformat().replace("+00:00", "Z"),
    }


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
