"""Who is acting: one context variable, set once per entry point.

The admin and the API set it through AuditActorMiddleware (the request is kept and
read lazily, because the API authenticates inside the view, after middleware ran);
code without a request (commands, periodic jobs, tests) acts as "system" unless
it names an actor with `audit_actor`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

REQUEST_ID_HEADERS = ("HTTP_X_REQUEST_ID", "HTTP_X_CORRELATION_ID")


@dataclass(frozen=True)
class Actor:
    kind: str  # AuditEntry.ActorKind
    id: str = ""
    name: str = ""
    request_id: str = ""


SYSTEM = Actor(kind="system")

_current: contextvars.ContextVar[Actor | HttpRequest | None] = contextvars.ContextVar(
    "herald_audit_actor", default=None
)


def _request_id(request: HttpRequest) -> str:
    for header in REQUEST_ID_HEADERS:
        value = request.META.get(header, "")
        if value:
            return str(value)[:128]
    return ""


def actor_of_request(request: HttpRequest) -> Actor:
    """The API client DRF authenticated (`request.auth`), else the logged-in user."""
    request_id = _request_id(request)
    client: Any = getattr(request, "auth", None)
    if client is not None and getattr(client, "pk", None) is not None:
        return Actor("api_client", str(client.pk), str(getattr(client, "name", "")), request_id)
    user: Any = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return Actor("admin_user", str(user.pk), str(user.get_username()), request_id)
    return Actor("system", request_id=request_id)


def actor_current() -> Actor:
    """The actor of the code running now."""
    value = _current.get()
    if value is None:
        return SYSTEM
    if isinstance(value, Actor):
        return value
    return actor_of_request(value)


def actor_bind_request(request: HttpRequest) -> contextvars.Token[Actor | HttpRequest | None]:
    """Make `request` the source of the actor until the token is reset (the middleware)."""
    return _current.set(request)


def actor_reset(token: contextvars.Token[Actor | HttpRequest | None]) -> None:
    _current.reset(token)


@contextmanager
def audit_actor(actor: Actor) -> Iterator[None]:
    """Act as `actor` inside the block (commands, tests)."""
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)
