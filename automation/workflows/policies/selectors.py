"""Reads for delivery policies: lists, one by id or key (the ledger: policies.ledger)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from automation.workflows.policies.models import DeliveryPolicy
from project.errors import NotFoundError

POLICY_SORT_FIELDS = {"created_at": "created_at", "key": "key", "delivery_policy_id": "pk"}


def delivery_policy_list() -> QuerySet[DeliveryPolicy]:
    return DeliveryPolicy.objects.all()


def delivery_policy_get(*, policy_id: str) -> DeliveryPolicy:
    """A policy by id or by key."""
    found = DeliveryPolicy.objects.filter(Q(pk=policy_id) | Q(key=policy_id)).order_by("pk").first()
    if found is None:
        raise NotFoundError(f"Delivery policy '{policy_id}' not found.")
    return found


def delivery_policy_find(*, ref: str) -> DeliveryPolicy | None:
    """The policy a workflow names (by key or id), or None."""
    return DeliveryPolicy.objects.filter(Q(pk=ref) | Q(key=ref)).order_by("pk").first()
