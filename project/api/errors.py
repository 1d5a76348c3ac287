"""The one error shape of the API, produced in one place.

    {"error": "Not Found", "message": "…", "statusCode": 404, "details": {…}}

`error` is the HTTP reason phrase, `message` a sentence for humans and
`details` (only when there is something to say per field) maps a field path to
a list of messages. DRF exceptions, Django's Http404 / PermissionDenied and our
own `ApiError` all end up here; Django-level 404/500 for API paths too.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from project.api.overload import overload_exception
from project.errors import HeraldError

API_PREFIX = "/rest-api/"


class ApiError(exceptions.APIException):
    """An error with a chosen status, message and optional per-field details."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.message = message
        self.details = details
        self.extra = extra or {}


class Conflict(ApiError):
    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, status_code=status.HTTP_409_CONFLICT, extra=extra)


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=status.HTTP_404_NOT_FOUND)


def error_body(
    status_code: int,
    message: str,
    details: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": HTTPStatus(status_code).phrase,
        "message": message,
        "statusCode": status_code,
    }
    if details:
        body["details"] = details
    if extra:
        body.update(extra)
    return body


def flatten_details(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"field.path": ["message", …]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                # DRF keys a list's item errors by index: spell it like msgspec, `a[0].b`.
                path = f"{prefix}[{key}]"
                for k, v in flatten_details(value, path).items():
                    out.setdefault(k, []).extend(v)
                continue
            name = "" if key == "non_field_errors" else str(key)
            path = f"{prefix}.{name}" if prefix and name else (name or prefix)
            for k, v in flatten_details(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(i) for i in detail)
        else:
            for index, item in enumerate(detail):
                path = f"{prefix}[{index}]" if prefix else f"[{index}]"
                for k, v in flatten_details(item, path).items():
                    out.setdefault(k, []).extend(v)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def _message_for(exc: exceptions.APIException, details: dict[str, list[str]] | None) -> str:
    if isinstance(exc, exceptions.ValidationError):
        if details:
            first_field, messages = next(iter(details.items()))
            if first_field == "non_field_errors":
                return messages[0]
            return f"Invalid input: {first_field}: {messages[0]}"
        return "Invalid input."
    if isinstance(exc, exceptions.ParseError):
        return f"Malformed request body: {exc.detail}"
    return str(exc.detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF EXCEPTION_HANDLER: every handled exception becomes the one shape."""
    if isinstance(exc, HeraldError):
        set_rollback()
        body = error_body(exc.status_code, exc.message, exc.details, exc.extra)
        return Response(body, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        # Django reports an oversized body as a SuspiciousOperation (a bare 400);
        # the client needs to know it is the size.
        exc = ApiError(
            f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    exc = overload_exception(exc) or exc  # the database refused: 503, not 500
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django log it and answer 500

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    if isinstance(exc, ApiError):
        body = error_body(exc.status_code, exc.message, exc.details, exc.extra)
    else:
        details = (
            flatten_details(exc.detail) if isinstance(exc, exceptions.ValidationError) else None
        )
        body = error_body(exc.status_code, _message_for(exc, details), details)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def _is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def json_error_response(status_code: int, message: str) -> JsonResponse:
    return JsonResponse(error_body(status_code, message), status=status_code)


# Django-level handlers (URLconf handler404/handler500): JSON for API paths,
# Django's own pages elsewhere (the admin).
def handler404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api_path(request):
        return json_error_response(404, f"No endpoint at {request.path}.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> Any:
    if _is_api_path(request):
        return json_error_response(500, "Internal server error. It has been logged.")
    from django.views.defaults import server_error

    return server_error(request)


def handler400(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api_path(request):
        return json_error_response(400, "Bad request.")
    from django.views.defaults import bad_request

    return bad_request(request, exception or Exception())


def handler403(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api_path(request):
        return json_error_response(403, "Forbidden.")
    from django.views.defaults import permission_denied

    return permission_denied(request, exception or PermissionDenied())
