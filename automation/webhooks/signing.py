"""Signing secrets and signatures (Standard Webhooks): what a receiver checks a message with."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

from automation.webhooks.models import Endpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(*, endpoint: Endpoint, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers; during a rotation both secrets sign (space-separated)."""
    signatures = [
        Webhook(secret).sign(message_id, now, body) for secret in endpoint.signing_secrets(now)
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
