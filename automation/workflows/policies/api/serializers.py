"""Request bodies (msgspec) and output shapes of the delivery policies API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automation.workflows.policies.models import DeliveryPolicy
from automation.workflows.policies.spec import MAX_CAP_COUNT, MAX_CAPS

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class CapIn(msgspec.Struct, forbid_unknown_fields=True):
    """At most `count` actions of the types `actions` per customer in a rolling `window`."""

    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_CAP_COUNT)]
    window: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    actions: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(min_length=1, max_length=20)
    ]


class QuietHoursIn(msgspec.Struct, forbid_unknown_fields=True):
    """A daily window [start, end) in the customer's time zone; start > end crosses midnight."""

    start: Clock
    end: Clock
    timezone_attribute: Short
    default_timezone: Short


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A policy; on PATCH every field is optional and absent fields keep their value."""

    key: Key | None = None
    caps: Annotated[list[CapIn], msgspec.Meta(max_length=MAX_CAPS)] | None = None
    quiet_hours: QuietHoursIn | msgspec.UnsetType | None = msgspec.UNSET
    on_blocked: Literal["skip", "defer"] | None = None


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /delivery-policies, PATCH and PUT /delivery-policies/{id}:
    `{"policy": {...}}`."""

    policy: PolicyIn


def policy_data(body: PolicyBody) -> dict[str, Any]:
    """The fields the client gave, as plain data (policies.spec's shape)."""
    given: dict[str, Any] = msgspec.to_builtins(body.policy)
    return {
        name: value for name, value in given.items() if value is not None or name == "quiet_hours"
    }


class CapSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    window = serializers.CharField(help_text="ISO 8601 duration, e.g. P7D.")
    actions = serializers.ListField(child=serializers.CharField(), help_text="Action types.")


# Inline, with a type: OpenAPI 3.0 validators ignore `nullable` beside a bare $ref.
QUIET_HOURS_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "A daily window [start, end) in the customer's time zone; null: none.",
    "properties": {
        "start": {"type": "string", "description": "HH:MM"},
        "end": {"type": "string", "description": "HH:MM"},
        "timezone_attribute": {"type": "string"},
        "default_timezone": {"type": "string"},
    },
    "required": ["start", "end", "timezone_attribute", "default_timezone"],
}


@extend_schema_field(QUIET_HOURS_SCHEMA)
class QuietHoursField(serializers.JSONField):
    pass


class DeliveryPolicySerializer(serializers.ModelSerializer):
    delivery_policy_id = serializers.CharField(source="id")
    caps = CapSerializer(many=True)
    quiet_hours = QuietHoursField(allow_null=True)

    class Meta:
        model = DeliveryPolicy
        fields = [
            "delivery_policy_id",
            "key",
            "caps",
            "quiet_hours",
            "on_blocked",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
