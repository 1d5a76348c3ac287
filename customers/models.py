from __future__ import annotations

from django.db import models

from project.ids import PUBLIC_ID_LENGTH, new_public_id


class Customer(models.Model):
    """A person or account of the integrator, known by the integrator's own id."""

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    # The integrator's id / alias for the customer; lookups by it are the
    # batch API's customer_external_id path (unique index serves them).
    external_id = models.CharField(max_length=255, unique=True)
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
        return self.external_id
