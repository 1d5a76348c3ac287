"""The `Idempotency-Key` header on configuration POSTs: one decorator for view methods."""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from project.api.errors import ApiError
from project.idempotency.services import (
    idempotency_answer_store,
    idempotency_claim,
    idempotency_release,
)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key and body within 24 hours answer with the first "
        "response (and `Idempotent-Replayed: true`) without doing anything again; the same "
        "key with another body is a 422. 1 to 255 printable ASCII characters."
    ),
)

F = TypeVar("F", bound=Callable[..., Response])


def _body_bytes(request: Request) -> bytes:
    """The body as the view will read it.

    Without a Content-Length (chunked transfer encoding) Django sees an empty body and
    the view reads the WSGI input stream itself (project.api.body); so the stream is read
    here, bounded like any body, and put back as a buffer holding the same bytes.
    """
    django_request = request._request
    if django_request.META.get("CONTENT_LENGTH"):
        return django_request.body
    if "chunked" not in django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return django_request.body
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    raw = django_request.META["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise ApiError(
            f"The request body is larger than {limit} bytes.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    django_request.META["wsgi.input"] = io.BytesIO(raw)
    return raw


def _request_hash(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    digest.update(_body_bytes(request))
    return digest.hexdigest()


def idempotent(view_method: F) -> F:
    """Make a POST safe to retry: with an `Idempotency-Key` header, the same key and
    body within 24 h get the first answer (status and body, `Idempotent-Replayed:
    true`) and nothing is created again; the same key with another body is a 422.

    The key is claimed, the view run and its answer stored in one transaction, so
    concurrent requests with one key perform it once. An exception or a 5xx answer
    keeps nothing: the client may retry with the same key.
    """

    @extend_schema(parameters=[IDEMPOTENCY_PARAMETER])
    @functools.wraps(view_method)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not _KEY_RE.match(key):
            raise ApiError(
                f"Invalid {HEADER} header.",
                details={HEADER: ["1 to 255 printable ASCII characters, without spaces."]},
            )
        client_id = str(getattr(request.auth, "pk", "") or "")
        request_hash = _request_hash(request)
        with transaction.atomic():
            earlier = idempotency_claim(client_id=client_id, key=key, request_hash=request_hash)
            if earlier is not None:
                if earlier.request_hash != request_hash:
                    raise ApiError(
                        f"This {HEADER} was used for a different request.",
                        status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                        details={
                            HEADER: [
                                "Already used with another body, method or path within "
                                "24 hours; send a new key for a new request."
                            ]
                        },
                    )
                return Response(
                    earlier.body,
                    status=earlier.status_code,
                    headers={REPLAYED_HEADER: "true"},
                )
            response = view_method(self, request, *args, **kwargs)
            if response.status_code >= 500:
                idempotency_release(client_id=client_id, key=key)
            else:
                idempotency_answer_store(
                    client_id=client_id,
                    key=key,
                    status_code=response.status_code,
                    body=response.data,
                )
            return response

    return cast(F, wrapper)
