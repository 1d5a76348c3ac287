"""Strict JSON request bodies decoded by msgspec.

msgspec validates while it decodes (far cheaper than DRF serializers: docs/performance.md),
and
its Struct types are the single source of truth for what a valid request is:
the OpenAPI components are generated from the same types (see project/api/schema.py).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from rest_framework import status
from rest_framework.request import Request

from project.api.errors import ApiError

T = TypeVar("T")

_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def validation_details(exc: msgspec.ValidationError) -> tuple[str, dict[str, list[str]]]:
    """Split msgspec's "Expected `str`, got `int` - at `$.event.id`" into path and message."""
    match = _PATH_RE.match(str(exc))
    assert match is not None
    message = match.group("msg")
    path = (match.group("path") or "").lstrip(".") or "non_field_errors"
    return message, {path: [message]}


def check_json_content_type(request: Request) -> None:
    content_type = request.META.get("CONTENT_TYPE", "")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        raise ApiError(
            "Content-Type must be application/json.",
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            raise ApiError(
                "Only UTF-8 JSON is accepted.",
                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )


def decode_json(raw: bytes, type_: type[T]) -> T:
    """Decode and validate raw bytes; any problem is a 400 in the API's error shape."""
    try:
        # msgspec checks UTF-8 only in the strings it decodes; parts kept as
        # msgspec.Raw (batch items) are echoed back, so check the whole body.
        raw.decode("utf-8")
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        message, details = validation_details(exc)
        field = next(iter(details))
        where = "" if field == "non_field_errors" else f"{field}: "
        raise ApiError(f"Invalid input: {where}{message}", details=details) from None
    except msgspec.DecodeError as exc:
        raise ApiError(f"Malformed JSON body: {exc}") from None
    except UnicodeDecodeError:
        raise ApiError("The body is not valid UTF-8 JSON.") from None


def read_body_limited(request: Request, limit: int) -> bytes:
    """The raw request body, or a 413 once it is longer than `limit` bytes.

    Decided from the bytes on the wire before anything is parsed. A declared
    Content-Length over the limit is refused without reading. Without a
    Content-Length (chunked transfer encoding) Django sees an empty body, so the
    WSGI input stream (which the server de-chunks) is read directly, and never
    more than `limit + 1` bytes of it.
    """
    django_request = request._request
    declared = django_request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError("Invalid Content-Length header.") from None
        if length > limit:
            raise _too_large(limit)
        return django_request.body
    stream = django_request.META["wsgi.input"]
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        f"The request body is larger than {limit} bytes.",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def parse_body(request: Request, type_: type[T]) -> T:
    check_json_content_type(request)
    return decode_json(request.body, type_)


def parse_json_object(request: Request) -> dict[str, Any]:
    """For endpoints whose bodies are validated by DRF serializers."""
    return parse_body(request, dict[str, Any])
