"""The request id: one name for an API request and for the background work it causes.

1. `RequestIdMiddleware` gives each request an id: a sane incoming `X-Request-ID`
   (what a proxy or the client chose, so their logs and ours join up) or a new one,
   returns it in the `X-Request-ID` response header and puts it in `REQUEST_ID`, a
   context variable every log line of the request reads (project.logs), until
   Django's `request_finished`.
2. Work handed to Celery carries it in a message header (`before_task_publish`); the
   worker puts it back in `REQUEST_ID` while it runs that task (`task_prerun`) and
   clears it afterwards (`task_postrun`), so the worker's log lines name the request
   that caused them, and the work that task hands on carries the same id.
3. The embedded runner (project.background) runs a submitted task in a copy of the
   submitter's context, which holds the same variable.

Celery's signals are infrastructure here (a header copied in and out), not business
flow: no Herald behaviour depends on them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
# The Celery message header that carries it (protocol 2 puts custom headers on
# task.request).
CELERY_HEADER = "herald_request_id"
# What we accept from outside: an id that is safe to write into a log line and a
# header as it is (no spaces, quotes or control characters) and of bounded length.
# Anything else is replaced, never escaped or cut.
ACCEPTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,127}")

REQUEST_ID: ContextVar[str] = ContextVar("herald_request_id", default="")


def request_id_new() -> str:
    """A fresh id: 32 random hex characters."""
    return secrets.token_hex(16)


def request_id_accept(value: str | None) -> str:
    """The incoming id if it is sane, else a fresh one."""
    if value and ACCEPTED.fullmatch(value):
        return value
    return request_id_new()


def request_id_current() -> str:
    """The id of the request (or task) this code runs for; "" outside of one."""
    return REQUEST_ID.get()


class RequestIdMiddleware:
    """Assign the request id, expose it to logging, answer it in `X-Request-ID`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_accept(request.META.get(META_KEY))
        # Not reset on the way out: Django logs a 4xx/5xx answer (django.request) after
        # the middleware returned; `request_finished` clears it once the answer is sent.
        REQUEST_ID.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _on_request_finished(**_: Any) -> None:
    REQUEST_ID.set("")


# ---------------------------------------------------------------- Celery messages


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = REQUEST_ID.get()
    if request_id and headers is not None:
        headers[CELERY_HEADER] = request_id


def _on_task_start(task: Any = None, **_: Any) -> None:
    value = getattr(getattr(task, "request", None), CELERY_HEADER, None)
    # A message from elsewhere (an older publisher, a hand-made message) is checked
    # like an incoming header.
    REQUEST_ID.set(value if isinstance(value, str) and ACCEPTED.fullmatch(value) else "")


def _on_task_end(**_: Any) -> None:
    # A worker thread runs one task after another: the next must not inherit this id.
    REQUEST_ID.set("")


def signals_connect() -> None:
    """Forget the id once a request is answered, and carry it through Celery messages
    (called once from project.apps)."""
    from celery import signals
    from django.core.signals import request_finished

    request_finished.connect(_on_request_finished, dispatch_uid="herald-rid-finished")
    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="herald-rid-pub")
    signals.task_prerun.connect(_on_task_start, weak=False, dispatch_uid="herald-rid-start")
    signals.task_postrun.connect(_on_task_end, weak=False, dispatch_uid="herald-rid-end")
