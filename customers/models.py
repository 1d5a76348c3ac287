from __future__ import annotations

from django.db import models

from project.ids import PUBLIC_ID_LENGTH, new_public_id


class Customer(models.Model):
    """A person or account of the integrator, known by the integrator's own id."""

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    # The integrator's id for the customer; lookups by it are the batch API's
    # customer_external_id path (unique index serves them). Null for an anonymous
    # customer: one known so far only by an `anonymous_id` (customers.identity).
    external_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # The visitor id an anonymous customer was first seen with; it stays when the
    # customer is identified, so later events naming it still land here.
    anonymous_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    email = models.EmailField(blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    # Labels set by integrations and workflow actions (add_tags / remove_tags).
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Admin search and API filter by email.
            models.Index(fields=["email"], name="customer_email_idx"),
            # GET /customers?sort_field=created_at (ties broken by id).
            models.Index(fields=["created_at", "id"], name="customer_created_idx"),
        ]

    def __str__(self) -> str:
        return self.external_id or f"anonymous {self.anonymous_id or self.id}"

    @property
    def is_anonymous(self) -> bool:
        return self.external_id is None


class CustomerAlias(models.Model):
    """Another identifier that resolves to a customer: an external id or an anonymous id
    the customer gained by a merge (customers.identity). Events naming it land on the
    customer."""

    class Kind(models.TextChoices):
        EXTERNAL = "external"
        ANONYMOUS = "anonymous"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="aliases")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.CharField(max_length=255)
    # The merge that made this alias (its public id), so undoing that merge removes it;
    # blank for an alias given directly.
    merge_id = models.CharField(max_length=PUBLIC_ID_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "customer aliases"
        constraints = [
            # One identifier resolves to one customer: ingest's alias lookup.
            models.UniqueConstraint(fields=["kind", "value"], name="customeralias_unique"),
        ]
        indexes = [
            # A customer's aliases (the customer object, merges, deletes).
            models.Index(fields=["customer"], name="customeralias_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value} -> {self.customer_id}"


# The identity and privacy packages' models; Django finds them here (app label
# `customers`).
from customers.identity.models import CustomerMerge, MergedRow  # noqa: E402
from customers.privacy.models import (  # noqa: E402
    PrivacyExport,
    PrivacyExportPart,
    PrivacyRequest,
    SuppressedIdentifier,
)

__all__ = [
    "Customer",
    "CustomerAlias",
    "CustomerMerge",
    "MergedRow",
    "PrivacyExport",
    "PrivacyExportPart",
    "PrivacyRequest",
    "SuppressedIdentifier",
]
