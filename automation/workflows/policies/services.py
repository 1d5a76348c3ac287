"""Writes for delivery policies, and the gate every policed action passes.

CRUD: create, update (PATCH merges, PUT replaces), delete (409 while a workflow names
the policy). Each write validates the whole policy (policies.spec.policy_errors) and
reports every problem at its path (`caps[0].window`, `quiet_hours.end`).

The gate (`policy_gate`, called by automation.workflows.runner in the transaction that
performs one action and records its outcome):

1. No policy on the workflow, or an action marked `exempt_from_policy`: no gate.
2. Quiet hours first, from the customer's time-zone attribute: a skipped or deferred
   action takes nothing from a cap, and reads no ledger.
3. For the caps that list the action's type: take a transaction-scoped lock on
   (policy, customer), count the ledger (PolicyUsage) in each cap's window, and
   decide. The lock is held until the step commits, and the runner writes the
   usage row (`policy_usage_record`) in the same transaction as the action's effect,
   so of any number of racing runs exactly `count` get through, and an action that
   fails rolls its usage back with it.

An action "succeeds" for a cap when it ran: for a webhook action that is the
delivery being created (it is sent after commit and retried by the delivery engine),
not the receiver's answer -- a cap limits what Herald sends, and a retried
delivery is one message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.policies.models import DeliveryPolicy, PolicyUsage
from automation.workflows.policies.selectors import policy_usage_in_window
from automation.workflows.policies.spec import (
    ALLOWED,
    MAX_WINDOW,
    PolicySpec,
    Verdict,
    policy_errors,
    policy_spec_of,
    verdict,
)
from project.audit.services import audit_record, audit_snapshot
from project.cascade import cascade_delete_object
from project.errors import ConflictError, ValidationFailed

if TYPE_CHECKING:
    from automation.workflows.models import WorkflowRun
    from customers.models import Customer

AUDIT_TYPE = "delivery_policy"
PRUNE_CHUNK = 5000
EXEMPT = "exempt_from_policy"


# ---------------------------------------------------------------- writes


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        path, messages = next(iter(errors.items()))
        where = f"{path}: " if path else ""
        raise ValidationFailed(f"Invalid delivery policy: {where}{messages[0]}", details=errors)


def _key_conflict(key: str) -> ConflictError:
    existing = DeliveryPolicy.objects.filter(key=key).values_list("pk", flat=True).first()
    return ConflictError(
        f"A delivery policy with the key '{key}' already exists.",
        extra={"delivery_policy_id": existing},
    )


def delivery_policy_validate(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every problem of a whole policy, by path (empty when valid)."""
    return policy_errors(data, action_types=ACTIONS.keys())


def _normalized(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": data["key"],
        "caps": data.get("caps") or [],
        "quiet_hours": data.get("quiet_hours"),
        "on_blocked": data.get("on_blocked") or DeliveryPolicy.OnBlocked.SKIP,
    }


def delivery_policy_create(*, data: dict[str, Any]) -> DeliveryPolicy:
    """Validate and store a policy. `data`: {"key", "caps", "quiet_hours", "on_blocked"}."""
    _raise_if(delivery_policy_validate(data))
    fields = _normalized(data)
    if DeliveryPolicy.objects.filter(key=fields["key"]).exists():
        raise _key_conflict(fields["key"])
    try:
        with transaction.atomic():
            policy = DeliveryPolicy.objects.create(**fields)
            audit_record(
                action="created",
                obj_type=AUDIT_TYPE,
                obj_id=policy.pk,
                after=audit_snapshot(policy),
            )
    except IntegrityError:
        raise _key_conflict(fields["key"]) from None
    return policy


def delivery_policy_update(
    *, policy: DeliveryPolicy, data: dict[str, Any], replace: bool = False
) -> DeliveryPolicy:
    """Change the given fields (PATCH), or every field (`replace`: PUT, absent fields take
    their defaults); the result is validated as a whole. Runs already under way obey
    the changed policy from their next action on."""
    merged = dict(data) if replace else {**policy.as_data(), **data}
    _raise_if(delivery_policy_validate(merged))
    fields = _normalized(merged)
    if fields["key"] != policy.key and DeliveryPolicy.objects.filter(key=fields["key"]).exists():
        raise _key_conflict(fields["key"])
    try:
        with transaction.atomic():
            before = audit_snapshot(policy)
            for name, value in fields.items():
                setattr(policy, name, value)
            policy.save()
            audit_record(
                action="updated",
                obj_type=AUDIT_TYPE,
                obj_id=policy.pk,
                before=before,
                after=audit_snapshot(policy),
            )
    except IntegrityError:
        raise _key_conflict(fields["key"]) from None
    return policy


def delivery_policy_delete(*, policy: DeliveryPolicy) -> None:
    """Delete a policy and its ledger; refused (409) while a workflow names it."""
    users = sorted(policy.workflows.values_list("pk", flat=True)[:100])
    if users:
        raise ConflictError(
            f"Delivery policy '{policy.key}' is used by workflow(s): {', '.join(users)}.",
            extra={"workflows": users},
        )
    with transaction.atomic():
        audit_record(
            action="deleted", obj_type=AUDIT_TYPE, obj_id=policy.pk, before=audit_snapshot(policy)
        )
        # Set-based: the ledger can be large. PROTECT still refuses (409) if a
        # workflow took the policy since the check above.
        cascade_delete_object(policy)


# ---------------------------------------------------------------- the gate


@dataclass(frozen=True)
class Gate:
    """The policy's verdict on one action, and whether running it adds to the ledger."""

    policy_id: str
    verdict: Verdict
    counted: bool


def _lock(policy_id: str, customer_id: str) -> None:
    """Serialize cap decisions per (policy, customer) until commit. SQLite (the
    embedded default) has one writer at a time: its transaction is enough."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"policy:{policy_id}:{customer_id}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)]
        )


def _tz_name(spec: PolicySpec, customer: Callable[[], Customer]) -> Any:
    if spec.quiet_hours is None:
        return None
    attributes = customer().attributes
    if not isinstance(attributes, dict):
        return None
    return attributes.get(spec.quiet_hours.timezone_attribute)


def _decide(
    policy: DeliveryPolicy,
    *,
    action: dict[str, Any],
    customer_id: str,
    customer: Callable[[], Customer],
    now: datetime,
    lock: bool,
) -> Gate | None:
    if action.get(EXEMPT) is True:
        return None
    spec = policy_spec_of(policy.as_data())
    action_type = str(action.get("type", ""))
    caps = spec.caps_for(action_type)
    if not caps and spec.quiet_hours is None:
        return None
    tz_name = _tz_name(spec, customer)
    quiet = verdict(spec, action_type=action_type, tz_name=tz_name, now=now)
    if not quiet.allowed or not caps:
        return Gate(policy.pk, quiet, counted=False)
    if lock:
        _lock(policy.pk, customer_id)
    counts = [
        (
            cap,
            policy_usage_in_window(policy_id=policy.pk, customer_id=customer_id, cap=cap, now=now),
        )
        for cap in caps
    ]
    decided = verdict(spec, action_type=action_type, tz_name=tz_name, now=now, successes=counts)
    return Gate(policy.pk, decided, counted=decided.allowed)


def policy_gate(
    *, run: WorkflowRun, action: dict[str, Any], now: datetime, customer: Callable[[], Customer]
) -> Gate | None:
    """The run's policy's verdict on its next action (None: no policy applies). Call
    inside the step's transaction, before the action; if `counted`, call
    policy_usage_record in the transaction that performs the action."""
    policy = run.workflow.delivery_policy
    if policy is None:
        return None
    return _decide(
        policy, action=action, customer_id=run.customer_id, customer=customer, now=now, lock=True
    )


def policy_usage_record(*, gate: Gate, run: WorkflowRun, action_type: str, now: datetime) -> None:
    """Add the action that `gate` let through to the policy's ledger."""
    if gate.counted:
        PolicyUsage.objects.create(
            policy_id=gate.policy_id,
            customer_id=run.customer_id,
            action_type=action_type,
            at=now,
            workflow_run_id=run.pk,
        )


def policy_preview(
    *, policy: DeliveryPolicy, actions: list[dict[str, Any]], customer: Customer, now: datetime
) -> dict[str, Any]:
    """What `policy` would do now with each of `actions` for `customer`, each judged on
    its own (the workflow test endpoint); reads only."""
    verdicts = []
    for index, action in enumerate(actions):
        gate = _decide(
            policy,
            action=action,
            customer_id=customer.pk,
            customer=lambda: customer,
            now=now,
            lock=False,
        )
        item: dict[str, Any] = {
            "index": index,
            "type": action.get("type"),
            "status": ALLOWED if gate is None else gate.verdict.status,
            "reason": None if gate is None else gate.verdict.reason,
        }
        if action.get(EXEMPT) is True:
            item["reason"] = "exempt from the policy"
        if gate is not None and gate.verdict.resume_at is not None:
            item["resume_at"] = gate.verdict.resume_at.isoformat()
        verdicts.append(item)
    return {"key": policy.key, "delivery_policy_id": policy.pk, "actions": verdicts}


def policy_usage_prune(now: datetime) -> int:
    """Periodic (`policies.prune`): delete ledger rows older than the longest window a
    cap may have, at most PRUNE_CHUNK per call; returns how many."""
    ids = list(
        PolicyUsage.objects.filter(at__lt=now - MAX_WINDOW)
        .order_by("at")
        .values_list("pk", flat=True)[:PRUNE_CHUNK]
    )
    if ids:
        PolicyUsage.objects.filter(pk__in=ids).delete()
    return len(ids)
