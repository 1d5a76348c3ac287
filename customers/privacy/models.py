"""The suppression list: identifiers whose events Herald refuses and never re-creates."""

from __future__ import annotations

from django.db import models


class SuppressedIdentifier(models.Model):
    """One identifier of a suppressed person, as a keyed hash (customers.privacy.hashing).

    Ingest hashes the identifiers an event names and refuses the event when one is here;
    `unsuppress` deletes the rows of its request.
    """

    kind = models.CharField(max_length=16)  # external_id | anonymous_id | email
    digest = models.CharField(max_length=64)
    # The privacy request that suppressed it (its public id).
    request_id = models.CharField(max_length=26, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Ingest's lookup "is any of these identifiers suppressed?", and one row each.
            models.UniqueConstraint(fields=["kind", "digest"], name="suppressed_identifier_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.digest[:12]}…"
