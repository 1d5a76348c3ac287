"""Answers kept for retried configuration POSTs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IdempotencyKey(models.Model):
    """The first answer to a POST sent with an `Idempotency-Key`, per API client.

    `client_id` is text, not a foreign key: this app sits below the one that owns
    API clients. `status_code` is null while the first request is still running
    (its transaction holds the row, so a concurrent twin waits for the answer).
    """

    client_id = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    # SHA-256 of the method, the path and the body bytes.
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "key"], name="idempotency_client_key_uniq")
        ]
        indexes = [
            # The expiry sweep: keys older than the retention.
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"
