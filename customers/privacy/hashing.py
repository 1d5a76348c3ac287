"""Keyed hashes of personal identifiers: what Herald may keep of a deleted person.

A suppression list and the privacy audit hold identifiers only as HMAC-SHA256 under a
server secret (HERALD_PRIVACY_KEY, else SECRET_KEY), never in clear: whoever reads the
tables cannot list the people on them, while ingest can still ask "is this id
suppressed?" by hashing what it receives. Rotating the key forgets the list, so the
key is its own setting.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from django.conf import settings

IdentifierKind = Literal["external_id", "anonymous_id", "email"]


def _key() -> bytes:
    return (getattr(settings, "HERALD_PRIVACY_KEY", "") or settings.SECRET_KEY).encode()


def identifier_digest(kind: IdentifierKind, value: str) -> str:
    """The keyed hash (64 hex digits) of one identifier of one kind; emails compare
    case-insensitively, so they are hashed lower-cased."""
    if kind == "email":
        value = value.strip().lower()
    message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()
