"""API-key authentication: HTTP Basic (name + secret, as in seed 004) or Bearer.

Secrets are 256-bit random tokens, so a single SHA-256 is the right hash: a
slow password hash would add no safety against brute force of a random key
and would cost milliseconds on every request.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from events_app.api_clients import api_client_authenticate
from events_app.models import ApiClient

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


class ApiKeyBasicAuthentication(authentication.BaseAuthentication):
    """`Authorization: Basic base64(name:secret)`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
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
        decoded = _decode_credentials(raw)
        name, sep, secret = decoded.partition(":")
        if not sep:
            raise exceptions.AuthenticationFailed("Malformed Basic authorization header.")
        client = api_client_authenticate(secret=secret, name=name)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid API client name or secret.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return f"Basic {REALM}, Bearer {REALM}"


class ApiKeyBearerAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <secret>`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Bearer authorization header.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed Bearer token.") from exc
        client = api_client_authenticate(secret=secret)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return f"Bearer {REALM}"


class HasApiScope(permissions.BasePermission):
    """Reads need the `read` scope, every other method needs `write`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
        needed = ApiClient.SCOPE_READ if request.method in SAFE_METHODS else ApiClient.SCOPE_WRITE
        if needed not in client.scope_set:
            raise exceptions.PermissionDenied(f"This API key lacks the '{needed}' scope.")
        return True
