"""Writes for delivery policies, and the gate every policed action passes.

CRUD: create, update (PATCH merges, PUT replaces), delete (409 while a workflow names
the policy). Each write validates the whole policy (policies.spec.policy_errors) and
reports every problem at its path (`caps[0].window`, `quiet_hours.end`).

The gate (`policy_admit`, called by automation.workflows.runner inside the savepoint
that performs one action):

1. No policy on the workflow, or an action marked `exempt_from_policy`: no gate.
2. For the caps that list the action's type: one statement checks every cap and, if
   all allow it, takes the action (its PolicyCounter updated, its ledger row written;
   policies.ledger), reading the customer's time-zone attribute too when quiet hours
   are configured. Racing runs of one customer queue on the counter row, so of any
   number of them exactly `count` get through.
3. Quiet hours first in the verdict, from that attribute: a skipped or deferred
   action takes nothing from a cap. When the statement took it, policy_admit raises
   PolicyBlocked, which rolls the savepoint back with the take; an action that fails
   rolls its take back the same way.

An action "succeeds" for a cap when it ran: for a webhook action that is the
delivery being created (it is sent after commit and retried by the delivery engine),
not the receiver's answer -- a cap limits what Herald sends, and a retried
delivery is one message.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction

from automation.workflows.actions import REGISTRY as ACTIONS
from automation.workflows.policies import ledger
from automation.workflows.policies.models import DeliveryPolicy, PolicyCounter, PolicyUsage
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
    from customers.identity.models import CustomerMerge
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


def _tz_name(spec: PolicySpec, attributes: dict[str, Any]) -> Any:
    if spec.quiet_hours is None:
        return None
    return attributes.get(spec.quiet_hours.timezone_attribute)


class PolicyBlocked(Exception):
    """Quiet hours blocked an action the check had taken (its `verdict`: skipped or
    deferred). Raised inside the caller's savepoint so that leaving it rolls the take
    back (the take is made in the statement that reads the time zone, before quiet
    hours are judged)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason or verdict.status)
        self.verdict = verdict


@functools.lru_cache(maxsize=256)
def _spec_of(policy_id: str, updated_at: datetime | None, data: str) -> PolicySpec:
    # Keyed by the row's id and edit time; `data` as well, for a row changed in place.
    return policy_spec_of(json.loads(data))


def policy_spec(policy: DeliveryPolicy) -> PolicySpec:
    """The parsed spec of a policy row (cached per version of the row)."""
    return _spec_of(policy.pk, policy.updated_at, json.dumps(policy.as_data(), sort_keys=True))


def policy_admit(*, run: WorkflowRun, action: dict[str, Any], now: datetime) -> Verdict | None:
    """The run's policy's verdict on its next action; None when no policy applies (none
    on the workflow, an exempt action, no cap or quiet hours for its type).

    Call inside the transaction's savepoint that performs the action, and let
    PolicyBlocked leave it: an action let through under a cap has its ledger row
    already written (policies.ledger), so an action that fails rolls it back with its
    own writes, and one that quiet hours block after the statement took it raises
    PolicyBlocked (with its verdict) to roll the take back. Other blocks are returned.
    """
    policy = run.workflow.delivery_policy
    if policy is None or action.get(EXEMPT) is True:
        return None
    spec = policy_spec(policy)
    action_type = str(action.get("type", ""))
    caps = spec.caps_for(action_type)
    if not caps and spec.quiet_hours is None:
        return None
    attribute = spec.quiet_hours.timezone_attribute if spec.quiet_hours is not None else None
    if not caps:
        assert attribute is not None
        tz_name = ledger.time_zone_attribute(customer_id=run.customer_id, attribute=attribute)
        return verdict(spec, action_type=action_type, tz_name=tz_name, now=now)
    if not connection.in_atomic_block:
        raise RuntimeError("policy_admit must run inside the action's transaction")
    taken = ledger.take(
        policy_id=policy.pk,
        customer_id=run.customer_id,
        action_type=action_type,
        caps=spec.caps,
        now=now,
        run_id=run.pk,
        tz_attribute=attribute,
    )
    judged = verdict(
        spec,
        action_type=action_type,
        tz_name=taken.tz_name,
        now=now,
        successes=() if taken.taken else zip(caps, taken.counts, strict=True),
    )
    if not judged.allowed and taken.taken:
        raise PolicyBlocked(judged)  # quiet hours: undo the take
    return judged


def policy_preview(
    *, policy: DeliveryPolicy, actions: list[dict[str, Any]], customer: Customer, now: datetime
) -> dict[str, Any]:
    """What `policy` would do now with each of `actions` for `customer`, each judged on
    its own (the workflow test endpoint); reads only."""
    spec = policy_spec(policy)
    attributes = customer.attributes if isinstance(customer.attributes, dict) else {}
    tz_name = _tz_name(spec, attributes)
    verdicts = []
    for index, action in enumerate(actions):
        action_type = str(action.get("type", ""))
        caps = spec.caps_for(action_type)
        item: dict[str, Any] = {"index": index, "type": action.get("type")}
        if action.get(EXEMPT) is True:
            verdicts.append({**item, "status": ALLOWED, "reason": "exempt from the policy"})
            continue
        found = ledger.counts(policy_id=policy.pk, customer_id=customer.pk, caps=caps, now=now)
        judged = verdict(
            spec,
            action_type=action_type,
            tz_name=tz_name,
            now=now,
            successes=zip(caps, found, strict=True),
        )
        item.update(status=judged.status, reason=judged.reason)
        if judged.resume_at is not None:
            item["resume_at"] = judged.resume_at.isoformat()
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


def policy_counters_recount(*, customer_ids: list[str]) -> int:
    """Mark these customers' counters stale, to be rebuilt from the ledger at their next
    check: a merge or its undo moved ledger rows between customers. Returns how many."""
    return PolicyCounter.objects.filter(customer_id__in=customer_ids).update(caps_key="")


def policy_counters_merged(merge: CustomerMerge) -> None:
    """The merged and undone hooks (customers.identity.hooks)."""
    policy_counters_recount(customer_ids=[merge.primary_id, merge.secondary_id])
