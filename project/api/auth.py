"""The generic parts of API authentication: reading the Authorization header.

What a credential is and who it belongs to is the API clients' business
(events_app.api.auth, named in settings.REST_FRAMEWORK).
"""

from __future__ import annotations

import base64
import binascii

from rest_framework import authentication, exceptions
from rest_framework.request import Request

REALM = 'realm="Herald"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _decode_credentials(raw: bytes) -> str:
    """UTF-8, else ISO-8859-1.

    RFC 7617 leaves the charset of Basic credentials open unless the server
    advertises one; clients that predate UTF-8 send ISO-8859-1, and seed 004's
    own example header carries a password that is not valid UTF-8. ISO-8859-1
    maps every byte, so such a secret still authenticates (its hash is taken
    of the decoded text) instead of failing as "malformed".
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(name, secret) of `Authorization: Basic base64(name:secret)`; None without a Basic
    header; a malformed one fails authentication."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"basic":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Malformed Basic authorization header.")
    try:
        raw = base64.b64decode(header[1], validate=True)
    except binascii.Error as exc:
        raise exceptions.AuthenticationFailed(
            "Malformed Basic authorization header: the credentials are not valid base64."
        ) from exc
    name, sep, secret = _decode_credentials(raw).partition(":")
    if not sep:
        raise exceptions.AuthenticationFailed("Malformed Basic authorization header.")
    return name, secret


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`; None without a Bearer header; a
    malformed one fails authentication."""
    header = authentication.get_authorization_header(request).split()
    if not header or header[0].lower() != b"bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Malformed Bearer authorization header.")
    try:
        return header[1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise exceptions.AuthenticationFailed("Malformed Bearer token.") from exc
