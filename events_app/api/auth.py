"""API-key authentication: HTTP Basic (name + secret, as in seed 004) or Bearer.

Secrets are 256-bit random tokens, so a single SHA-256 is the right hash: a
slow password hash would add no safety against brute force of a random key
and would cost far more on every request. The header parsing is generic
(project.api.auth); the keys are API clients (events_app.api_clients).

Rate limits (project.api.ratelimit) are counted here, once the client is known:
each request against its client's ingestion or API budget, each failed
authentication against its source address, whose spent budget also stops further
key look-ups from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from events_app.api_clients import api_client_authenticate
from events_app.models import ApiClient, RateLimitCounter
from project.api.auth import REALM, SAFE_METHODS, basic_credentials, bearer_token
from project.api.ratelimit import (
    Policy,
    RateLimited,
    RateLimiter,
    client_address,
    decision_record,
)

limiter = RateLimiter(table=RateLimitCounter._meta.db_table)

# The ingestion endpoints (URL names in events_app.api.urls), counted against the
# client's ingestion budget when POSTed to; every other request against its API budget.
INGEST_URL_NAMES = frozenset({"events", "events-batch"})


def rate_limit_counters_prune(now: datetime) -> int:
    """Delete the database store's counters of windows that have ended (an address that
    failed once leaves a row behind); returns how many. Nothing to do with Redis, whose
    keys expire."""
    window = max(settings.HERALD_RATE_LIMIT_WINDOW_SECONDS, 1)
    current = int(now.timestamp()) // window * window
    return RateLimitCounter.objects.filter(window_start__lt=current).delete()[0]


def _client_policy(request: Request, client: ApiClient) -> Policy | None:
    match = request._request.resolver_match
    if request.method == "POST" and match is not None and match.url_name in INGEST_URL_NAMES:
        name, own, default = "ingest", client.ingest_rate_limit, settings.HERALD_RATE_LIMIT_INGEST
    else:
        name, own, default = "api", client.api_rate_limit, settings.HERALD_RATE_LIMIT_API
    quota = default if own is None else own
    return Policy(name, quota, settings.HERALD_RATE_LIMIT_WINDOW_SECONDS) if quota > 0 else None


def _failure_policy() -> Policy | None:
    quota = settings.HERALD_RATE_LIMIT_AUTH_FAILURES
    return (
        Policy("auth-failures", quota, settings.HERALD_RATE_LIMIT_WINDOW_SECONDS)
        if quota > 0
        else None
    )


def _admit(request: Request, client: ApiClient) -> None:
    """Count the request against the client's budget; 429 when it is spent."""
    policy = _client_policy(request, client)
    if policy is None:
        return
    decision = limiter.hit(policy, f"client:{client.pk}")
    decision_record(request._request, decision)
    if decision is not None and not decision.admitted:
        raise RateLimited(
            decision,
            f"Rate limit exceeded: {policy.quota} {policy.name} requests per "
            f"{policy.window} s for this API client. Retry after {decision.reset} s.",
        )


def _refuse_exhausted_address(request: Request) -> None:
    """Before a key is looked up: 429 if its address has used up its failures."""
    policy = _failure_policy()
    if policy is None:
        return
    decision = limiter.peek(policy, f"address:{client_address(request._request)}")
    if decision.count >= policy.quota:
        decision_record(request._request, decision)
        raise _too_many_failures(decision)


def _too_many_failures(decision: Any) -> RateLimited:
    return RateLimited(
        decision,
        f"Too many failed authentications from this address: at most "
        f"{decision.policy.quota} per {decision.policy.window} s. "
        f"Retry after {decision.reset} s.",
    )


def authentication_failed(request: Request, error: exceptions.APIException) -> Exception:
    """Count a failed authentication against its address: the error to raise, a 429
    once the address has spent its failures."""
    policy = _failure_policy()
    if policy is None:
        return error
    decision = limiter.hit(policy, f"address:{client_address(request._request)}")
    decision_record(request._request, decision)
    if decision is not None and not decision.admitted:
        return _too_many_failures(decision)
    return error


def _authenticated(request: Request, secret: str, name: str | None, message: str) -> ApiClient:
    client = api_client_authenticate(
        secret=secret, name=name, before_lookup=lambda: _refuse_exhausted_address(request)
    )
    if client is None:
        raise authentication_failed(request, exceptions.AuthenticationFailed(message))
    _admit(request, client)
    return client


class ApiKeyBasicAuthentication(authentication.BaseAuthentication):
    """`Authorization: Basic base64(name:secret)`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        try:
            credentials = basic_credentials(request)
        except exceptions.AuthenticationFailed as error:
            raise authentication_failed(request, error) from None
        if credentials is None:
            return None
        name, secret = credentials
        client = _authenticated(request, secret, name, "Invalid API client name or secret.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return f"Basic {REALM}, Bearer {REALM}"


class ApiKeyBearerAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <secret>`."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        try:
            secret = bearer_token(request)
        except exceptions.AuthenticationFailed as error:
            raise authentication_failed(request, error) from None
        if secret is None:
            return None
        client = _authenticated(request, secret, None, "Invalid or revoked API key.")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return f"Bearer {REALM}"


class HasApiScope(permissions.BasePermission):
    """Reads need the `read` scope, every other method needs `write`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            missing = exceptions.NotAuthenticated("Authentication credentials were not provided.")
            raise authentication_failed(request, missing)
        needed = ApiClient.SCOPE_READ if request.method in SAFE_METHODS else ApiClient.SCOPE_WRITE
        if needed not in client.scope_set:
            raise exceptions.PermissionDenied(f"This API key lacks the '{needed}' scope.")
        return True
