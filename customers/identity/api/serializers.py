"""Request bodies (msgspec) and output shapes of the identity API."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from rest_framework import serializers

from customers.identity.models import CustomerMerge

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class MergeIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /customers/merge."""

    primary: Id
    secondary: Id
    dry_run: bool = False
    force: bool = False


class IdentifyIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /customers/identify."""

    anonymous_id: Identifier
    external_id: Identifier
    attributes: dict[str, Any] | None = None


class MergeSerializer(serializers.ModelSerializer):
    merge_id = serializers.CharField(source="id")
    primary_customer_id = serializers.CharField(source="primary_id")
    secondary_customer_id = serializers.CharField(source="secondary_id")
    primary_external_id = serializers.CharField(allow_null=True)
    secondary_external_id = serializers.CharField(allow_null=True)
    moved = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rows moved to the primary per kind (events, workflow_runs, …).",
    )
    superseded = serializers.DictField(
        source="superseded_counts",
        child=serializers.IntegerField(),
        help_text="Rows of the secondary dropped for their twin on the primary (a current "
        "stay in the same segment); an undo restores them.",
    )
    attributes_overwritten = serializers.DictField(
        help_text='The primary\'s blank or missing attributes the merge filled: {"before"?, '
        '"after"}.'
    )
    attribute_conflicts = serializers.DictField(
        help_text='Attributes both had, the primary\'s value kept: {"primary", "secondary"}.'
    )
    tags_added = serializers.ListField(child=serializers.CharField())
    aliases_added = serializers.ListField(child=serializers.DictField())
    undo_until = serializers.DateTimeField(help_text="The undo window's end.")

    class Meta:
        model = CustomerMerge
        fields = [
            "merge_id",
            "status",
            "source",
            "primary_customer_id",
            "secondary_customer_id",
            "primary_external_id",
            "secondary_external_id",
            "forced",
            "moved",
            "superseded",
            "attributes_overwritten",
            "attribute_conflicts",
            "tags_added",
            "aliases_added",
            "created_at",
            "undone_at",
            "undo_until",
        ]
        read_only_fields = fields


class MergePreviewSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    primary = serializers.CharField()
    secondary = serializers.CharField()
    moved = serializers.DictField(child=serializers.IntegerField())
    superseded = serializers.DictField(child=serializers.IntegerField())
    attributes_overwritten = serializers.DictField()
    attribute_conflicts = serializers.DictField()
    tags_added = serializers.ListField(child=serializers.CharField())
    aliases_added = serializers.ListField(child=serializers.DictField())
    segments = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='{"entered": [segment keys], "exited": [segment keys]} for the primary.',
    )
