"""OpenAPI helpers: the data envelope, the error shape and msgspec request bodies.

drf-spectacular generates the document from the views; these helpers describe
the parts it cannot infer (the `{"data": …}` envelope, msgspec-validated bodies)
so that a client generated from /schema/ works against the real API.
"""

from __future__ import annotations

from typing import Any

import django_filters
import msgspec
from django_filters import FilterSet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import get_lib_doc_excludes
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from project.api.listing import DEFAULT_COUNT, MAX_COUNT, MAX_OFFSET
from project.api.strict import StrictAPIView, StrictSerializer

_msgspec_types: list[Any] = []


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="HTTP reason phrase, e.g. 'Not Found'.")
    message = serializers.CharField(help_text="What went wrong, for humans.")
    statusCode = serializers.IntegerField()
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, keyed by the field's path.",
    )


def lib_doc_excludes() -> list[type]:
    """drf-spectacular's GET_LIB_DOC_EXCLUDES: base classes whose docstrings describe
    Herald's code, not the endpoints and bodies that derive from them."""
    return [*get_lib_doc_excludes(), StrictAPIView, StrictSerializer]


# Answers any operation can give, whatever its input: the rate limit and overload
# (PostgreSQL refusing connections, the pool exhausted). Both carry Retry-After.
ALWAYS = {
    429: "Too many requests for this API client (or failed logins from this address); "
    "retry after Retry-After seconds.",
    503: "Overloaded (no database connection available); retry after Retry-After seconds.",
}
DESCRIBED = {
    400: "Invalid input or an unknown query parameter.",
    401: "Missing or invalid credentials.",
    403: "The API key lacks the scope.",
    404: "Not found.",
    409: "Conflict.",
    413: "Body too large.",
    415: "Not JSON.",
    422: "The Idempotency-Key was used with another request.",
    **ALWAYS,
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error responses of an operation: `codes`, and those every operation can answer.

    Every operation can answer 400 (an unknown query parameter, see
    project/api/strict.py), 401, 403, 429 and 503; `complete_operations` adds the
    answers the shape of the operation implies (404 with a path parameter, 413 and
    415 with a body).
    """
    described = {**DESCRIBED}
    if 400 not in codes:
        described[400] = "An unknown query parameter or an empty filter value."
    wanted = sorted({*codes, 400, 401, 403, *ALWAYS})
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in wanted}


def envelope(name: str, inner: Any) -> Any:
    """`{"data": inner}` for the docs."""
    return inline_serializer(name=name, fields={"data": inner})


def list_envelope(name: str, key: str, item: type[serializers.Serializer]) -> Any:
    """`{"data": {key: [item…], "total_items": N}}` for the docs."""
    return envelope(
        name,
        inline_serializer(
            name=f"{name}Data",
            fields={key: item(many=True), "total_items": serializers.IntegerField()},
        ),
    )


def msgspec_body(struct: type) -> dict[str, Any]:
    """Request body schema for a msgspec Struct, registered as a component."""
    if struct not in _msgspec_types:
        _msgspec_types.append(struct)
    return {"application/json": {"$ref": f"#/components/schemas/{struct.__name__}"}}


def msgspec_components(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the msgspec Structs' JSON Schemas."""
    if not _msgspec_types:
        return result
    _refs, components = msgspec.json.schema_components(
        _msgspec_types, ref_template="#/components/schemas/{name}"
    )
    components = {name: _to_openapi_30(schema) for name, schema in components.items()}
    result.setdefault("components", {}).setdefault("schemas", {}).update(components)
    return result


def complete_operations(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: what the shape of every operation implies.

    1. A request body is required, and its operation can answer 400, 413 (too large)
       and 415 (not JSON).
    2. An operation with a path parameter can answer 404; the parameter is never empty.
    3. Every operation can answer 429 and 503 (`ALWAYS`).
    4. Request bodies refuse keys they do not declare (StrictSerializer, msgspec's
       forbid_unknown_fields): their components say `additionalProperties: false`.
    """
    error = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            implied = [*ALWAYS]
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
                implied += [400, 413, 415]
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    implied.append(404)
                    if parameter["schema"].get("type") == "string":
                        parameter["schema"].setdefault("minLength", 1)
            for code in sorted(set(implied)):
                responses.setdefault(
                    str(code),
                    {
                        "content": {"application/json": {"schema": error}},
                        "description": DESCRIBED[code],
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    for name, component in result.get("components", {}).get("schemas", {}).items():
        # COMPONENT_SPLIT_REQUEST names every request serializer's component *Request;
        # every one of them derives from StrictSerializer.
        if name.endswith("Request") and component.get("type") == "object":
            component.setdefault("additionalProperties", False)
    return result


def _to_openapi_30(node: Any) -> Any:
    """msgspec writes JSON Schema 2020-12 (`{"type": "null"}` in an anyOf); OpenAPI 3.0
    spells an optional value `nullable: true`, and generated clients only read that."""
    if isinstance(node, list):
        return [_to_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_openapi_30(value) for key, value in node.items()}
    if node.get("required") == []:
        del node["required"]  # 3.0 requires a non-empty list when present
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    return node


def filter_parameters(filterset_class: type[FilterSet]) -> list[OpenApiParameter]:
    """Query parameters of a django-filter FilterSet, for views that apply it by hand.

    A filter is never empty (`allow_blank=False`: `minLength: 1` in the document, and
    StrictAPIView answers 400 to `?email=`): an empty value filters nothing, so it is
    a mistake in the request, not a request for everything.
    """
    parameters: list[OpenApiParameter] = []
    for name, filter_ in filterset_class.base_filters.items():
        if isinstance(filter_, django_filters.BooleanFilter):
            parameters.append(OpenApiParameter(name, bool, allow_blank=False))
        elif isinstance(filter_, django_filters.IsoDateTimeFilter):
            bound = "inclusive" if filter_.lookup_expr == "gte" else "exclusive"
            parameters.append(
                OpenApiParameter(
                    name,
                    OpenApiTypes.DATETIME,
                    description=f"ISO 8601, {bound}.",
                    allow_blank=False,
                )
            )
        elif isinstance(filter_, django_filters.ChoiceFilter):
            choices = [value for value, _ in filter_.extra["choices"]]
            parameters.append(OpenApiParameter(name, str, enum=choices, allow_blank=False))
        else:
            parameters.append(OpenApiParameter(name, str, allow_blank=False))
    return parameters


class BasicKeyScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Basic base64(client name:secret)` (seed 004)."""

    target_class = "events_app.api.auth.ApiKeyBasicAuthentication"
    name = "apiKeyBasic"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Username = API client name, password = its secret.",
        }


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <secret>`."""

    target_class = "events_app.api.auth.ApiKeyBearerAuthentication"
    name = "apiKeyBearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "The API client's secret."}


def paging_parameters(
    count_param: str = "count", sort_help: str = "Field to sort by."
) -> list[OpenApiParameter]:
    """The list parameters of project.api.listing (seed 004 names `count`; seed 003 `limit`).

    Empty values mean the default, as omitting them does.
    """
    return [
        OpenApiParameter(
            count_param,
            {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
            description=f"Records to return, 1-{MAX_COUNT} (default {DEFAULT_COUNT}).",
        ),
        OpenApiParameter(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            description="Records to skip (default 0).",
        ),
        OpenApiParameter("sort_field", str, description=sort_help),
        OpenApiParameter(
            "sort_direction", str, enum=["ASC", "DESC"], description="Default DESC (any case)."
        ),
    ]


LIST_PARAMETERS = paging_parameters()


def schema_extensions_load() -> None:
    """Resolve every drf-spectacular extension's target class once, at start-up.

    drf-spectacular resolves them lazily, on the first schema request, by assigning to
    a class attribute it reads again in its error path; two threads of a threaded
    server generating the first document at once race there and one answers 500
    (`'NoneType' object has no attribute 'startswith'`). Resolved here, before any
    request, the lazy path never runs.
    """
    import drf_spectacular.openapi  # noqa: F401 - imports drf_spectacular.contrib's extensions
    from drf_spectacular.plumbing import OpenApiGeneratorExtension

    # Each kind of extension (authentication, serializer, view, ...) keeps its own list.
    kinds = OpenApiGeneratorExtension.__subclasses__()
    for extension in [e for kind in kinds for e in kind._registry]:
        if isinstance(extension.target_class, str):
            extension._load_class()
