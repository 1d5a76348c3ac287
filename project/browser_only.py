"""The browser's middleware, skipped on the API's paths.

Sessions, CSRF, the logged-in user and messages serve the admin and the pages a
browser renders. An API request authenticates with an API key inside its view
(events_app.api.auth): it reads no session, posts no form, shows no message and never
logs in, and DRF's views are CSRF-exempt, so running these for it only cost CPU on
every request (docs/performance.md). Each class here is the stock middleware passing
API requests straight through; what answers the API keeps running (security headers,
host validation, audit, rate-limit headers). django-axes's middleware stays as it is:
its system check looks for it by its own name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware as StockAuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as StockMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as StockSessionMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware as StockCsrfViewMiddleware

from project.api import API_ROOT

_API_PATH = f"/{API_ROOT}"


def _skips_api(middleware: type[Any]) -> type[Any]:
    """`middleware` with a `__call__` that hands API requests to the next layer."""

    def __call__(self: Any, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(_API_PATH):
            get_response: Callable[[HttpRequest], HttpResponseBase] = self.get_response
            return get_response(request)
        response: HttpResponseBase = middleware.__call__(self, request)
        return response

    return type(middleware.__name__, (middleware,), {"__call__": __call__, "__module__": __name__})


SessionMiddleware = _skips_api(StockSessionMiddleware)
CsrfViewMiddleware = _skips_api(StockCsrfViewMiddleware)
AuthenticationMiddleware = _skips_api(StockAuthenticationMiddleware)
MessageMiddleware = _skips_api(StockMessageMiddleware)
