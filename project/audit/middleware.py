"""Binds each request to the audit actor (the admin's user or the API's client)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from project.audit.context import actor_bind_request, actor_reset


class AuditActorMiddleware:
    """Every audit entry written while a request is handled names its actor.

    The request is bound, not its user: the API authenticates inside the view
    (DRF sets `request.auth` on the Django request), after every middleware ran.
    The binding is undone when the response leaves, so a thread that serves the
    next request never inherits this one's actor.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = actor_bind_request(request)
        try:
            return self.get_response(request)
        finally:
            actor_reset(token)
