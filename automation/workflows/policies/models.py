"""Delivery policies and the ledger their caps count from."""

from __future__ import annotations

from typing import Any

from django.db import models

from customers.models import Customer
from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["DeliveryPolicy", "PolicyCounter", "PolicyUsage"]


class DeliveryPolicy(models.Model):
    """Frequency caps and quiet hours that the workflows naming it share
    (docs/automation.md, "Delivery policies"; the semantics: policies.spec)."""

    class OnBlocked(models.TextChoices):
        SKIP = "skip"
        DEFER = "defer"

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    key = models.SlugField(max_length=64, unique=True)
    # [{"count": 3, "window": "P7D", "actions": ["webhook"]}], validated by policies.spec.
    caps = models.JSONField(default=list, blank=True)
    # {"start": "21:00", "end": "08:00", "timezone_attribute", "default_timezone"} or null.
    quiet_hours = models.JSONField(null=True, blank=True)
    on_blocked = models.CharField(max_length=8, choices=OnBlocked.choices, default=OnBlocked.SKIP)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "delivery policy"
        verbose_name_plural = "delivery policies"
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /delivery-policies sorted by created_at.
            models.Index(fields=["created_at", "id"], name="deliverypolicy_created_idx"),
        ]

    def __str__(self) -> str:
        return self.key

    def as_data(self) -> dict[str, Any]:
        """The policy as policies.spec reads it."""
        return {
            "key": self.key,
            "caps": self.caps,
            "quiet_hours": self.quiet_hours,
            "on_blocked": self.on_blocked,
        }


class PolicyUsage(models.Model):
    """One action that a policy's caps count: it ran for the customer at `at`.

    Written in the transaction that runs the action and records its outcome, by the
    statement that took it from the (policy, customer) PolicyCounter (policies.ledger).
    The ledger is what a counter is rebuilt from, what "why capped" and the simulation
    read; rows older than the policy's longest window count for nothing.
    """

    id = models.BigAutoField(primary_key=True)
    # db_index=False: policyusage_window_idx leads with the policy.
    policy = models.ForeignKey(
        DeliveryPolicy, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    action_type = models.CharField(max_length=64)
    at = models.DateTimeField()
    # The run whose action this was, for "why was this capped" (no constraint: runs are
    # deleted with their workflow while the usage still counts for the customer).
    workflow_run_id = models.CharField(max_length=PUBLIC_ID_LENGTH, blank=True, default="")

    class Meta:
        indexes = [
            # The cap check: this customer's actions of these types under the policy
            # since the window's start.
            models.Index(
                fields=["policy", "customer", "action_type", "at"], name="policyusage_window_idx"
            ),
            # Deleting a customer (customer_id IN …) without reading every policy's rows.
            models.Index(fields=["customer"], name="policyusage_customer_idx"),
            # The policies.prune job: rows older than any window.
            models.Index(fields=["at"], name="policyusage_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_id}/{self.customer_id}: {self.action_type} at {self.at}"


class PolicyCounter(models.Model):
    """The caps' running state for one (policy, customer): what the check-and-take decides.

    `entries` holds, per cap of the policy, the times of the actions it counted that
    are still in its window (at most the cap's count each): [[cap index, epoch µs], …].
    The one statement that checks and takes (policies.ledger) locks this row by
    upserting it, so racing runs of one customer queue on it. `caps_key` fingerprints
    the caps the entries were counted for: a policy edit or a merge makes it stale, and
    the next check rebuilds the entries from the ledger (PolicyUsage) under the lock.
    """

    id = models.BigAutoField(primary_key=True)
    # db_index=False: policycounter_unique leads with the policy.
    policy = models.ForeignKey(
        DeliveryPolicy, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    caps_key = models.CharField(max_length=32, blank=True, default="")
    entries = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            # The check-and-take's ON CONFLICT target: one row per (policy, customer).
            models.UniqueConstraint(fields=["policy", "customer"], name="policycounter_unique"),
        ]
        indexes = [
            # Deleting or merging a customer (customer_id = …) across every policy.
            models.Index(fields=["customer"], name="policycounter_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_id}/{self.customer_id}: {len(self.entries)} counted"
