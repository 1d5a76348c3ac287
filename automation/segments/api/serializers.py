"""Request bodies (msgspec) and output shapes of the segments API."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from rest_framework import serializers

from automation.segments.models import Segment, SegmentBroadcast, SegmentMembership

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=10000)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# Also a path segment (GET /segments/{id}/broadcasts/{broadcast_key}): URL-safe.
BROADCAST_KEY_PATTERN = r"^[A-Za-z0-9._:-]+$"
BroadcastKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=BROADCAST_KEY_PATTERN)
]


class SegmentIn(msgspec.Struct, forbid_unknown_fields=True):
    """A segment; on PATCH every field is optional and absent fields keep their value."""

    key: Key | None = None
    name: Name | None = None
    description: Description | None = None
    condition: dict[str, Any] | None = None


class SegmentBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /segments and PATCH /segments/{id}: `{"segment": {...}}`."""

    segment: SegmentIn


class SegmentPreviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /segments/preview: a condition, and a customer to explain it for."""

    condition: dict[str, Any]
    customer_id: Id | None = None


class SegmentBroadcastIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /segments/{id}/broadcast: the workflow to run, and the client's key
    (the same key again finds this broadcast and starts nothing)."""

    workflow_id: Id
    broadcast_key: BroadcastKey


class SegmentSerializer(serializers.ModelSerializer):
    segment_id = serializers.CharField(source="id")
    condition = serializers.JSONField()
    member_count = serializers.IntegerField(help_text="Current members.")

    class Meta:
        model = Segment
        fields = [
            "segment_id",
            "key",
            "name",
            "description",
            "condition",
            "status",
            "member_count",
            "version",
            "built_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SegmentMemberSerializer(serializers.ModelSerializer):
    customer_id = serializers.CharField()
    external_id = serializers.CharField(source="customer.external_id", allow_null=True)
    email = serializers.CharField(source="customer.email")

    class Meta:
        model = SegmentMembership
        fields = ["customer_id", "external_id", "email", "entered_at"]
        read_only_fields = fields


class CustomerSegmentSerializer(serializers.ModelSerializer):
    segment_id = serializers.CharField()
    key = serializers.CharField(source="segment.key")
    name = serializers.CharField(source="segment.name")

    class Meta:
        model = SegmentMembership
        fields = ["segment_id", "key", "name", "entered_at", "exited_at"]
        read_only_fields = fields


class PreviewCustomerSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)
    email = serializers.CharField()


class SegmentPreviewSerializer(serializers.Serializer):
    member_count = serializers.IntegerField()
    sample = PreviewCustomerSerializer(many=True, help_text="Up to 20 members, by id.")
    explanation = serializers.DictField(
        allow_null=True,
        help_text="For customer_id: matched, and every leaf's value (docs/automation.md).",
    )


class SegmentBroadcastSerializer(serializers.ModelSerializer):
    segment_id = serializers.CharField()
    workflow_id = serializers.CharField()
    members_total = serializers.IntegerField(
        help_text="Members at as_of; when done, the runs made (members deleted meanwhile "
        "are not counted)."
    )
    members_done = serializers.IntegerField(help_text="Members whose run has been made.")

    class Meta:
        model = SegmentBroadcast
        fields = [
            "broadcast_key",
            "segment_id",
            "workflow_id",
            "status",
            "as_of",
            "members_total",
            "members_done",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields
