"""OpenAPI helpers: the data envelope, the error shape and msgspec request bodies.

drf-spectacular generates the document from the views; these helpers describe
the parts it cannot infer (the `{"data": …}` envelope, msgspec-validated bodies)
so that a client generated from /schema/ works against the real API.
"""

from __future__ import annotations

from typing import Any

import msgspec
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

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


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    common = {401: "Missing or invalid credentials.", 403: "The API key lacks the scope."}
    described = {
        400: "Invalid input.",
        404: "Not found.",
        409: "Conflict.",
        413: "Body too large.",
        415: "Not JSON.",
        **common,
    }
    wanted = sorted({*codes, 401, 403})
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
    _, components = msgspec.json.schema_components(
        _msgspec_types, ref_template="#/components/schemas/{name}"
    )
    result.setdefault("components", {}).setdefault("schemas", {}).update(components)
    return result
