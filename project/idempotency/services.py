"""Claiming, answering from and expiring idempotency keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from project.idempotency.models import IdempotencyKey

RETENTION = timedelta(hours=24)
EXPIRE_CHUNK = 5000


def idempotency_claim(*, client_id: str, key: str, request_hash: str) -> IdempotencyKey | None:
    """Claim `key` for a new request (None), or return the earlier request's row.

    Call inside the transaction that performs the request: the new row stays
    uncommitted until the answer is stored, so a concurrent request with the same
    key blocks on the unique index and then reads the committed answer (or, if the
    first one failed and rolled back, claims the key itself).
    A row older than RETENTION that the sweep has not removed yet is replaced.
    """
    for _ in range(2):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    client_id=client_id, key=key, request_hash=request_hash
                )
            return None
        except IntegrityError:
            row = IdempotencyKey.objects.filter(client_id=client_id, key=key).first()
            if row is None:
                continue  # expired and swept in between: claim again
            if row.created_at >= timezone.now() - RETENTION:
                return row
            IdempotencyKey.objects.filter(pk=row.pk).delete()
    raise RuntimeError("Idempotency key could not be claimed.")  # pragma: no cover


def idempotency_answer_store(*, client_id: str, key: str, status_code: int, body: Any) -> None:
    """Keep the first request's answer with its claimed key."""
    IdempotencyKey.objects.filter(client_id=client_id, key=key).update(
        status_code=status_code, body=json.loads(json.dumps(body, cls=JSONEncoder))
    )


def idempotency_release(*, client_id: str, key: str) -> None:
    """Give the key up (a server error: the client may retry with it)."""
    IdempotencyKey.objects.filter(client_id=client_id, key=key).delete()


def idempotency_keys_expire(now: datetime) -> int:
    """Periodic job: delete keys older than RETENTION, a bounded chunk per call."""
    old = IdempotencyKey.objects.filter(created_at__lt=now - RETENTION).order_by("created_at")
    ids = list(old.values_list("pk", flat=True)[:EXPIRE_CHUNK])
    deleted, _ = IdempotencyKey.objects.filter(pk__in=ids).delete()
    return deleted
