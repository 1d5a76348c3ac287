"""Content-Security-Policy on the pages a browser renders, not on the API's JSON answers.

django-csp builds the policy text anew for every response. A JSON answer is never
rendered as a document (it is served with `X-Content-Type-Options: nosniff`), so the
header protects nothing there, and building it was a measurable share of a single
POST /events (docs/performance.md). The admin, the landing page and the API docs keep
the policy (settings.CONTENT_SECURITY_POLICY).
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class PageCSPMiddleware(CSPMiddleware):
    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        return super().process_response(request, response)
