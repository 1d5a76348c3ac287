"""Webhook and delivery API shapes: msgspec request bodies, DRF output serializers."""

from __future__ import annotations

from typing import Annotated

import msgspec
from rest_framework import serializers

from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
EventTypeKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    """The `webhook` object of POST /webhooks. No event_types = every event type."""

    url: Url
    description: Description = ""
    event_types: list[EventTypeKey] = msgspec.field(default_factory=list)
    active: bool = True


class WebhookCreateIn(msgspec.Struct, forbid_unknown_fields=True):
    webhook: WebhookIn


class WebhookPatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """The `webhook` object of PATCH /webhooks/{id}: only the fields given change."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    event_types: list[EventTypeKey] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookUpdateIn(msgspec.Struct, forbid_unknown_fields=True):
    webhook: WebhookPatchIn


class WebhookSerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="id")
    event_types = serializers.SerializerMethodField(
        help_text=(
            "Event type keys; empty means every event type. The reserved key "
            "`customer.deleted` subscribes to deleted customers (not an event type)."
        )
    )

    class Meta:
        model = Endpoint
        fields = [
            "webhook_id",
            "url",
            "description",
            "event_types",
            "active",
            "disabled_reason",
            "disabled_at",
            "last_success_at",
            "first_failure_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_event_types(self, endpoint: Endpoint) -> list[str]:
        return sorted(
            [*(t.key for t in endpoint.event_types.all()), *endpoint.reserved_event_types]
        )


class WebhookWithSecretSerializer(WebhookSerializer):
    secret = serializers.SerializerMethodField(
        help_text="whsec_… signing secret; shown only at creation and rotation."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, endpoint: Endpoint) -> str:
        return endpoint.secret


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "status_code",
            "error",
            "outcome",
            "response_excerpt",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    delivery_id = serializers.CharField(source="id")
    webhook_id = serializers.CharField(source="endpoint_id")
    event_id = serializers.CharField(allow_null=True)
    customer_id = serializers.CharField(
        allow_null=True,
        help_text="The customer the delivery is about (null for pings, schedules and "
        "customer.deleted, and once the customer is deleted).",
    )
    webhook_message_id = serializers.CharField(
        source="message_id", help_text="The webhook-id header, the same on every attempt."
    )
    payload = serializers.JSONField()

    class Meta:
        model = Delivery
        fields = [
            "delivery_id",
            "webhook_id",
            "event_id",
            "customer_id",
            "webhook_message_id",
            "status",
            "attempt_count",
            "next_attempt_at",
            "created_at",
            "completed_at",
            "last_attempt_at",
            "last_status_code",
            "last_error",
            "payload",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempts"]
        read_only_fields = fields
