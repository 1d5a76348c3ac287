"""Writes for workflows: create, update, delete, (de)activate, rotate webhook secrets.

Every write validates the whole workflow (trigger types and segments, condition
tree, actions, re-entry policy) and reports each problem at its path
(`conditions.all[2].op`, `actions[1].duration`), then bumps `version` and
`updated_at`, which is how every worker process notices its cached copy of
the active workflows is stale (automation.workflows.selectors).

A workflow owns what it set going: its runs and the endpoints of its webhook
actions (WorkflowEndpoint). Deactivating it cancels its unfinished runs and
their pending deliveries; deleting it deletes them, endpoints and secrets
included. Either way nothing more goes out for it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.segments.hooks import TRANSITIONS
from automation.segments.selectors import segments_existing
from automation.webhooks.deliveries import deliveries_cancel_pending
from automation.webhooks.services import endpoint_delete, endpoint_rotate_secret
from automation.workflows.actions import validate_actions
from automation.workflows.actions.webhook import webhook_endpoints_sync
from automation.workflows.conditions import trees as condition_trees
from automation.workflows.durations import parse_duration
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.policies.models import DeliveryPolicy
from automation.workflows.policies.selectors import delivery_policy_find
from automation.workflows.selectors import active_workflows_forget, workflow_webhook_secrets
from events_app.models import EventType
from project.audit.services import audit_record, audit_snapshot
from project.cascade import cascade_delete_object
from project.errors import ValidationFailed

AUDIT_TYPE = "workflow"
WRITABLE = (
    "name",
    "trigger_event_types",
    "trigger_segments",
    "conditions",
    "actions",
    "active",
    "reentry",
    "delivery_policy",
)
TRIGGER_SEGMENT_SHAPE = '{"segment": a key or id, "on": "entered" or "exited"}'


@dataclass
class WorkflowInput:
    """A workflow as a client describes it; unset fields (None) keep their value on update."""

    name: str | None = None
    trigger_event_types: list[str] | None = None
    trigger_segments: list[Any] | None = None
    conditions: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    active: bool | None = None
    reentry: str | None = None
    # A policy's key or id; None: no policy; UNSET: keep (on update).
    delivery_policy: str | msgspec.UnsetType | None = msgspec.UNSET


def _resolve_policy(
    ref: str | msgspec.UnsetType | None, errors: dict[str, list[str]]
) -> DeliveryPolicy | None:
    if ref is None or ref is msgspec.UNSET:
        return None
    policy = delivery_policy_find(ref=str(ref)) if isinstance(ref, str) else None
    if policy is None:
        errors.setdefault("delivery_policy", []).append(
            f"Unknown delivery policy {ref!r} (give a key or an id)."
        )
    return policy


def _resolve_types(
    refs: list[str], errors: dict[str, list[str]], *, required: bool
) -> list[EventType]:
    if not refs:
        if required:
            errors.setdefault("trigger_event_types", []).append(
                "Give at least one event type (or a segment in trigger_segments)."
            )
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


def _check_trigger_segments(items: Any, errors: dict[str, list[str]]) -> list[dict[str, str]]:
    """Each item names a segment that exists and entered / exited; the valid ones,
    without repeats."""
    if not isinstance(items, list):
        message = f"Must be a list of {TRIGGER_SEGMENT_SHAPE}."
        errors.setdefault("trigger_segments", []).append(message)
        return []
    refs = {
        item["segment"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("segment"), str)
    }
    known = segments_existing(refs=refs) if refs else set()
    kept: list[dict[str, str]] = []
    for index, item in enumerate(items):
        path = f"trigger_segments[{index}]"
        if not isinstance(item, dict) or set(item) != {"segment", "on"}:
            errors.setdefault(path, []).append(f"Must be {TRIGGER_SEGMENT_SHAPE}.")
            continue
        valid = True
        if not isinstance(item["segment"], str) or item["segment"] not in known:
            errors.setdefault(f"{path}.segment", []).append(
                f"Unknown segment {item['segment']!r} (give a key or an id)."
            )
            valid = False
        if item["on"] not in TRANSITIONS:
            errors.setdefault(f"{path}.on", []).append("Must be entered or exited.")
            valid = False
        entry = {"segment": item["segment"], "on": item["on"]}
        if valid and entry not in kept:
            kept.append(entry)
    return kept


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
    """count / first leaves must name event types that exist, segment leaves segments."""
    refs = set()
    segments = set()
    for leaf in condition_trees.iter_leaves(tree):
        if "count" in leaf:
            refs.add(leaf["count"]["event_type"])
        elif "first" in leaf:
            refs.add(leaf["first"])
        elif "segment" in leaf:
            segments.add(leaf["segment"])
    unknown = sorted(segments - segments_existing(refs=segments)) if segments else []
    if unknown:
        errors.setdefault("conditions", []).append(f"Unknown segment(s): {', '.join(unknown)}.")
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
    types = _resolve_types(
        data.trigger_event_types or [], errors, required=not data.trigger_segments
    )
    _check_trigger_segments(
        data.trigger_segments if data.trigger_segments is not None else [], errors
    )
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
    _resolve_policy(data.delivery_policy, errors)
    return errors, types


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid workflow: {path}: {messages[0]}", details=errors)


def _after_write(workflow: Workflow) -> None:
    webhook_endpoints_sync(workflow=workflow)
    if not workflow.active:
        _stop(workflow)
    # This process sees its own change at once; others through the stamp.
    transaction.on_commit(active_workflows_forget)


def workflow_create(*, data: WorkflowInput) -> Workflow:
    """Validate and store a workflow (active unless said otherwise)."""
    errors, types = workflow_validate(data)
    _raise_if(errors)
    with transaction.atomic():
        workflow = Workflow.objects.create(
            name=data.name.strip() if data.name else "",
            trigger_segments=_check_trigger_segments(data.trigger_segments or [], {}),
            conditions=data.conditions or {},
            actions=data.actions or [],
            active=True if data.active is None else data.active,
            reentry=data.reentry or Workflow.EVERY_EVENT,
            delivery_policy=_resolve_policy(data.delivery_policy, {}),
        )
        workflow.trigger_event_types.set(types)
        _after_write(workflow)
        audit_record(
            action="created", obj_type=AUDIT_TYPE, obj_id=workflow.pk, after=_state(workflow)
        )
    return workflow


def _state(workflow: Workflow, links: list[WorkflowEndpoint] | None = None) -> dict[str, Any]:
    """The workflow as the audit trail records it: its columns, trigger types, endpoints."""
    if links is None:
        links = _endpoint_links(workflow)
    return audit_snapshot(
        workflow, extra={"webhook_endpoints": [link.endpoint_id for link in links]}
    )


def workflow_update(*, workflow: Workflow, data: WorkflowInput) -> Workflow:
    """Change the given fields; the result is validated as a whole."""
    merged = WorkflowInput(
        name=workflow.name if data.name is None else data.name,
        trigger_event_types=(
            [t.pk for t in workflow.trigger_event_types.all()]
            if data.trigger_event_types is None
            else data.trigger_event_types
        ),
        trigger_segments=(
            workflow.trigger_segments if data.trigger_segments is None else data.trigger_segments
        ),
        conditions=workflow.conditions if data.conditions is None else data.conditions,
        actions=workflow.actions if data.actions is None else data.actions,
        active=workflow.active if data.active is None else data.active,
        reentry=workflow.reentry if data.reentry is None else data.reentry,
        delivery_policy=(
            workflow.delivery_policy_id
            if data.delivery_policy is msgspec.UNSET
            else data.delivery_policy
        ),
    )
    errors, types = workflow_validate(merged)
    _raise_if(errors)
    with transaction.atomic():
        before = _state(workflow)
        workflow.name = (merged.name or "").strip()
        workflow.trigger_segments = _check_trigger_segments(merged.trigger_segments or [], {})
        workflow.conditions = merged.conditions or {}
        workflow.actions = merged.actions or []
        workflow.active = bool(merged.active)
        workflow.reentry = merged.reentry or Workflow.EVERY_EVENT
        workflow.delivery_policy = _resolve_policy(merged.delivery_policy, {})
        workflow.version = F("version") + 1
        workflow.save()
        workflow.refresh_from_db(fields=["version"])
        workflow.trigger_event_types.set(types)
        _after_write(workflow)
        audit_record(
            action="updated",
            obj_type=AUDIT_TYPE,
            obj_id=workflow.pk,
            before=before,
            after=_state(workflow),
        )
    return workflow


def workflow_set_active(*, workflow: Workflow, active: bool) -> Workflow:
    """Activate or deactivate. Deactivating cancels the workflow's unfinished runs
    (waiting ones included) and their pending deliveries; re-activating starts afresh:
    only events that arrive from then on are evaluated."""
    with transaction.atomic():
        before = _state(workflow)
        Workflow.objects.filter(pk=workflow.pk).update(
            active=active, version=F("version") + 1, updated_at=timezone.now()
        )
        workflow.refresh_from_db()
        if not active:
            _stop(workflow)
        transaction.on_commit(active_workflows_forget)
        audit_record(
            action="activated" if active else "deactivated",
            obj_type=AUDIT_TYPE,
            obj_id=workflow.pk,
            before=before,
            after=_state(workflow),
        )
    return workflow


def _stop(workflow: Workflow) -> None:
    """Cancel an inactive workflow's unfinished runs, then its pending deliveries.

    In this order: a run whose action is being performed holds its row lock, so
    the UPDATE of the runs waits for it, and any delivery that action creates is
    committed by the time the deliveries are cancelled. A run created later from
    a worker's stale copy is cancelled by the runner (it checks `active`).
    """
    status = WorkflowRun.Status
    WorkflowRun.objects.filter(
        workflow=workflow, status__in=[status.PENDING, status.WAITING]
    ).update(
        status=status.CANCELLED,
        error=WorkflowRun.DEACTIVATED,
        finished_at=timezone.now(),
        resume_at=None,
    )
    deliveries_cancel_pending(
        endpoint_ids=WorkflowEndpoint.objects.filter(workflow=workflow).values_list(
            "endpoint_id", flat=True
        ),
        reason="the workflow was deactivated.",
    )


def workflow_delete(*, workflow: Workflow) -> dict[str, int]:
    """Delete a workflow with everything it owns; returns rows deleted per model.

    Its runs go (waiting runs never resume), then the endpoints of its webhook
    actions with their secrets and deliveries (automation.webhooks.services), so
    nothing more is sent for it. Runs first, for the reason given in `_stop`.
    Set-based (project.cascade): a workflow can have millions of runs, which
    Django's Collector would load first; here each table is one statement.
    """
    with transaction.atomic():
        links = _endpoint_links(workflow)
        audit_record(
            action="deleted",
            obj_type=AUDIT_TYPE,
            obj_id=workflow.pk,
            before=_state(workflow, links),
        )
        endpoints = [link.endpoint for link in links]
        deleted = Counter(cascade_delete_object(workflow))
        for endpoint in endpoints:
            deleted.update(endpoint_delete(endpoint=endpoint))
        transaction.on_commit(active_workflows_forget)
    return dict(deleted)


def _endpoint_links(workflow: Workflow) -> list[WorkflowEndpoint]:
    return list(
        WorkflowEndpoint.objects.filter(workflow=workflow)
        .select_related("endpoint")
        .order_by("endpoint_id")
    )


def workflow_webhook_secrets_rotate(*, workflow: Workflow) -> dict[str, str]:
    """Give every endpoint of the workflow a new signing secret; endpoint id → new secret.

    The old secrets keep signing alongside for the webhooks' rotation overlap.
    """
    with transaction.atomic():
        rotated = {
            link.endpoint_id: endpoint_rotate_secret(endpoint=link.endpoint)
            for link in _endpoint_links(workflow)
        }
        audit_record(
            action="secret_rotated",
            obj_type=AUDIT_TYPE,
            obj_id=workflow.pk,
            after={"webhook_endpoints": sorted(rotated)},
        )
    return rotated


def workflow_webhook_secrets_reveal(*, workflow: Workflow) -> dict[str, str]:
    """The workflow's signing secrets (endpoint id → secret), shown on purpose: recorded
    in the audit trail (which names the endpoints, never the secrets)."""
    secrets = workflow_webhook_secrets(workflow=workflow)
    audit_record(
        action="secret_shown",
        obj_type=AUDIT_TYPE,
        obj_id=workflow.pk,
        after={"webhook_endpoints": sorted(secrets)},
    )
    return secrets
