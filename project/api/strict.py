"""Strict DRF serializers for the CRUD resources: unknown keys are an error.

DRF silently drops keys a serializer does not declare, so a typo such as
`"emial"` in a PATCH would answer 200 and change nothing. Every request
serializer of the API derives from `StrictSerializer`, which names the unknown
keys in the 400's `details` (nested serializers report their own, so the path
reads `customer.emial`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from project.api.body import parse_json_object

UNKNOWN_FIELD = "Unknown field."


class StrictSerializer(serializers.Serializer):
    """A Serializer that rejects keys it does not declare as writable fields."""

    def to_internal_value(self, data: Any) -> Any:
        unknown: list[str] = []
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data if key not in writable)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # Report unknown keys together with the other problems, not one round-trip later.
            detail = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError(
                {**detail, **{key: [UNKNOWN_FIELD] for key in unknown}}
            ) from None
        if unknown:
            raise serializers.ValidationError({key: [UNKNOWN_FIELD] for key in unknown})
        return value


class NonEmptyPatchMixin:
    """For PATCH bodies: a wrapper object that sets nothing is a mistake, not a no-op."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give at least one field to change.")
        return attrs


def validated_body(request: Request, serializer_class: type[serializers.Serializer]) -> Any:
    """Decode a JSON object body (415/400 on bad bytes) and validate it with a serializer."""
    serializer = serializer_class(data=parse_json_object(request))
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning 157613 into "157613".

    The msgspec-validated event bodies are strict about JSON types; the CRUD
    bodies follow the same rule so an id is a string everywhere.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
