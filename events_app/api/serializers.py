"""Output shapes of the events API (seed 004 field names) and event-type input."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord
from events_app.payloads import EVENT_FIELDS, event_payload


class EventSerializer(serializers.ModelSerializer):
    """The event object (events_app.payloads): the fields document it in the OpenAPI
    schema, `event_payload` renders it."""

    event_id = serializers.CharField(source="id")
    event_type_id = serializers.CharField()
    customer_id = serializers.CharField()
    # The seed's field name; DRF's metaclass pops declared fields, so this does
    # not shadow Serializer.data at runtime (the stubs cannot know that).
    data = serializers.JSONField()  # type: ignore[assignment]
    status = serializers.CharField(help_text="pending, completed or failed.")
    state = serializers.IntegerField(help_text="1 = pending, 2 = completed, 3 = failed.")

    class Meta:
        model = Event
        fields = list(EVENT_FIELDS)
        read_only_fields = fields

    def to_representation(self, instance: Event) -> dict[str, Any]:
        return event_payload(instance)


class PropertyRecordSerializer(serializers.ModelSerializer):
    event_id = serializers.CharField()

    class Meta:
        model = PropertyRecord
        fields = ["event_id", "property_id", "property_value"]
        read_only_fields = fields


class PropertyDefinitionSerializer(serializers.ModelSerializer):
    type = serializers.ChoiceField(
        source="value_type", choices=PropertyDefinition.ValueType.choices, default="string"
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    required = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]

    class Meta:
        model = PropertyDefinition
        fields = ["property_id", "name", "type", "required"]


class EventTypeSerializer(serializers.ModelSerializer):
    event_type_id = serializers.CharField(source="id", read_only=True)
    # Not the model's slug pattern: types Herald creates itself have reserved keys with a
    # dot (`customer.merged`, customers.identity), which no client-made type can take.
    key = serializers.CharField(
        read_only=True,
        help_text="A slug; Herald's own types have reserved keys with a dot (customer.merged).",
    )
    properties = PropertyDefinitionSerializer(many=True, read_only=True)

    class Meta:
        model = EventType
        fields = [
            "event_type_id",
            "key",
            "name",
            "description",
            "properties",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
