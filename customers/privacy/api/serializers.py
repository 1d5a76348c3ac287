"""Privacy request API shapes: strict input, and the request as its audit record shows it."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from customers.privacy.models import PrivacyRequest
from project.api.strict import StrictCharField, StrictSerializer

IDENTIFIER_KINDS = [kind.value for kind in PrivacyRequest.IdentifierKind]


class PrivacyCustomerIn(StrictSerializer):
    """Exactly one identifier of the person."""

    customer_id = StrictCharField(max_length=26, required=False)
    external_id = StrictCharField(max_length=255, required=False)
    email = StrictCharField(max_length=254, required=False)
    anonymous_id = StrictCharField(max_length=255, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError(f"Give exactly one of {', '.join(IDENTIFIER_KINDS)}.")
        return attrs


class PrivacyRequestIn(StrictSerializer):
    type = serializers.ChoiceField(choices=PrivacyRequest.Type.choices)
    customer = PrivacyCustomerIn()


class PrivacyRequestSerializer(serializers.ModelSerializer):
    """A request; its identifier only as the keyed hash, whatever its status."""

    request_id = serializers.CharField(source="id")
    identifier = serializers.SerializerMethodField(
        help_text="The identifier's kind and its keyed hash (HMAC-SHA256); never the value."
    )
    actor = serializers.SerializerMethodField()
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows touched, per kind; empty until done."
    )

    class Meta:
        model = PrivacyRequest
        fields = [
            "request_id",
            "type",
            "status",
            "identifier",
            "actor",
            "counts",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "export_expires_at",
        ]
        read_only_fields = fields

    def get_identifier(self, request: PrivacyRequest) -> dict[str, str]:
        return {"kind": request.identifier_kind, "digest": request.identifier_digest}

    def get_actor(self, request: PrivacyRequest) -> dict[str, str]:
        return {"kind": request.actor_kind, "id": request.actor_id, "name": request.actor_name}
