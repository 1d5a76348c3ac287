"""API-key authentication: HTTP Basic (name + secret, as in seed 004) or Bearer.

Secrets are 256-bit random tokens, so a single SHA-256 is the right hash: a
slow password hash would add no safety against brute force of a random key
and would cost far more on every request. The header parsing is generic
(project.api.auth); the keys are API clients (events_app.api_clients).
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from events_app.api_clients import api_client_authenticate
from events_app.models import ApiClient
from project.api.auth import REALM, SAFE_METHODS, basic_credentials, bearer_token


class ApiKeyBasicAuthentication(authentication.BaseAuthentication):
    """`Authorization: Basic base64(name:secret)`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        credentials = basic_credentials(request)
        if credentials is None:
            return None
        name, secret = credentials
        client = api_client_authenticate(secret=secret, name=name)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid API client name or secret.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return f"Basic {REALM}, Bearer {REALM}"


class ApiKeyBearerAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <secret>`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        secret = bearer_token(request)
        if secret is None:
            return None
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
