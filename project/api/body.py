"""Strict JSON request bodies decoded by msgspec.

msgspec validates while it decodes (far cheaper than DRF serializers: docs/performance.md),
and its Struct types are the single source of truth for what a valid request is:
the OpenAPI components are generated from the same types (see project/api/schema.py).

Every body is decoded here, so this is also where input that the parser, the
database and Python disagree on is refused with a 400 naming the field:
null characters (PostgreSQL stores none, in text or jsonb), nesting deeper than
MAX_DEPTH (recursive code further on would fail), datetimes PostgreSQL cannot
store or Python cannot read back (project.datetimes). msgspec itself refuses
lone surrogates, NaN/Infinity and numbers beyond a double's range.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from datetime import datetime
from itertools import accumulate
from typing import Any, TypeVar

import msgspec
from django.conf import settings
from rest_framework import status
from rest_framework.request import Request

from project.api.errors import ApiError
from project.datetimes import utc_datetime

T = TypeVar("T")

_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)

MAX_DEPTH = 64
NUL_REFUSED = "Null characters (\\u0000) are not allowed."
SURROGATE_REFUSED = "Lone UTF-16 surrogates are not allowed."
NOT_FINITE = "Numbers must be finite."
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels is not accepted."

# A JSON string, escapes included (unrolled, so the regex engine does not backtrack).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = bytes.maketrans(b"{[]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"{[]}")))


def json_too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, from the bytes alone.

    Checked before decoding: the decoders recurse, and a few thousand levels
    exhaust Python's stack. Cheap when the body has few brackets at all; else
    strings are cut out and the running depth is summed in C (array + accumulate).
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    steps = _JSON_STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0) > limit


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def value_problem(value: Any, path: str = "", *, strings: bool = True) -> tuple[str, str] | None:
    """The first (path, reason) why a decoded value cannot be stored, or None.

    Walks Structs, dicts and lists. Datetimes in Structs are converted to UTC in
    place (project.datetimes). With `strings`, also refuses null characters and
    lone surrogates in strings and keys, and non-finite floats (what Python's json
    lets through); without it, only Structs and lists of them are walked.
    """
    if isinstance(value, str):
        if strings:
            if "\x00" in value:
                return path or "non_field_errors", NUL_REFUSED
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return path or "non_field_errors", SURROGATE_REFUSED
        return None
    if isinstance(value, msgspec.Struct):
        # Paths name fields as the client wrote them (a renamed field: its JSON name).
        for name, shown in zip(
            value.__struct_fields__, value.__struct_encode_fields__, strict=True
        ):
            field = getattr(value, name)
            if isinstance(field, datetime):
                try:
                    setattr(value, name, utc_datetime(field))
                except ValueError as exc:
                    return _join(path, shown), str(exc)
            elif field is not None and not isinstance(field, int | bool | msgspec.Raw):
                problem = value_problem(field, _join(path, shown), strings=strings)
                if problem:
                    return problem
        return None
    if isinstance(value, list):
        if strings or (value and isinstance(value[0], msgspec.Struct)):
            for index, item in enumerate(value):
                problem = value_problem(item, f"{path}[{index}]", strings=strings)
                if problem:
                    return problem
        return None
    if isinstance(value, dict):
        if strings:
            for key, item in value.items():
                key_problem = value_problem(key, path, strings=True)
                if key_problem:
                    return path or "non_field_errors", f"Keys: {key_problem[1]}"
                problem = value_problem(item, _join(path, str(key)), strings=True)
                if problem:
                    return problem
        return None
    if isinstance(value, float) and strings and not math.isfinite(value):
        return path or "non_field_errors", NOT_FINITE
    return None


def decode_strict(raw: bytes, type_: type[T]) -> T:
    """msgspec's strict decode plus the checks above, as msgspec errors.

    For a part decoded on its own, as a batch's items are: its problems are
    msgspec.ValidationError with the path in the message, like msgspec's own.
    """
    if json_too_deep(raw):
        raise msgspec.DecodeError(TOO_DEEP)
    try:
        value = msgspec.json.decode(raw, type=type_, strict=True)
    except RecursionError:
        raise msgspec.DecodeError(TOO_DEEP) from None
    # A null character can only be spelled as this escape (a raw one is malformed JSON),
    # so bodies without it skip the walk through strings.
    problem = value_problem(value, strings=b"\\u0000" in raw)
    if problem:
        path, reason = problem
        where = f" - at `$.{path}`" if path != "non_field_errors" else ""
        raise msgspec.ValidationError(f"{reason}{where}")
    return value


def loads_strict(text: str) -> Any:
    """Python's json.loads held to what msgspec accepts; ValueError with a reason.

    For JSON that arrives inside a string (an event's `data` may be sent so).
    Python's json takes NaN, Infinity, 1e400 (as inf), lone surrogates and null
    characters, and recurses without a limit; none of it can be stored.
    """
    if json_too_deep(text.encode("utf-8", "surrogatepass")):
        raise ValueError(f"is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ValueError(f"is nested deeper than {MAX_DEPTH} levels") from None
    problem = value_problem(value)
    if problem:
        path, reason = problem
        where = "" if path == "non_field_errors" else f" (at {path})"
        raise ValueError(f"is not accepted{where}: {reason.rstrip('.')}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"is not valid JSON: {text} is out of a number's range")
    return number


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
        return decode_strict(raw, type_)
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
    more than `limit + 1` bytes of it. Neither header: there is no body.
    """
    django_request = request._request
    meta = django_request.META
    declared = meta.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError("Invalid Content-Length header.") from None
        if length > limit:
            raise _too_large(limit)
        return django_request.body
    if "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        # A server without chunked support may hand over the open socket: reading it
        # would wait for the client.
        return b""
    stream = meta["wsgi.input"]
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
    """Check the content type, read the body (chunked too) and decode it.

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE bounds both: a declared length through
    `request.body`, a chunked body (which Django reads as empty) counted on the wire.
    """
    check_json_content_type(request)
    if request._request.META.get("CONTENT_LENGTH"):
        return decode_json(request.body, type_)
    return decode_json(read_body_limited(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE), type_)


def parse_json_object(request: Request) -> dict[str, Any]:
    """For endpoints whose bodies are validated by DRF serializers."""
    return parse_body(request, dict[str, Any])
