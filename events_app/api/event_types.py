"""Event types API: create, list, get, update (PATCH) and delete event types.

Same wrapping style as POST /events: the type's own fields sit under
`event_type`, its property definitions in a sibling `properties` list. PATCH
replaces the whole `properties` list when it is given (a definition missing
from the new list is removed), so a client never has to diff definitions.
"""

from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from events_app import event_types, selectors
from events_app.api.serializers import EventTypeSerializer
from events_app.models import EventType, PropertyDefinition
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, filter_parameters
from project.api.schema import list_envelope as list_schema
from project.api.strict import (
    NonEmptyPatchMixin,
    StrictAPIView,
    StrictCharField,
    StrictSerializer,
    query_params,
    validated_body,
)
from project.idempotency.views import idempotent

# ---------------------------------------------------------------- input


class PropertyDefinitionIn(StrictSerializer):
    property_id = serializers.SlugField(max_length=64)
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    type = serializers.ChoiceField(
        choices=PropertyDefinition.ValueType.choices,
        required=False,
        default=PropertyDefinition.ValueType.STRING,
    )
    # The stubs see Field.required (a bool); DRF moves declared fields off the class.
    required = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]


class EventTypeFieldsIn(StrictSerializer):
    key = serializers.SlugField(max_length=64, help_text="Unique slug, e.g. `purchase`.")
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="")


class EventTypeFieldsPatchIn(NonEmptyPatchMixin, StrictSerializer):
    key = serializers.SlugField(max_length=64, required=False)
    name = StrictCharField(max_length=200, required=False)
    description = StrictCharField(required=False, allow_blank=True)


class EventTypeCreateIn(StrictSerializer):
    event_type = EventTypeFieldsIn()
    properties = PropertyDefinitionIn(many=True, required=False, default=list)


class EventTypeUpdateIn(StrictSerializer):
    event_type = EventTypeFieldsPatchIn(required=False)
    properties = PropertyDefinitionIn(
        many=True,
        required=False,
        help_text="When given, replaces every property definition of the type.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "event_type" not in attrs and "properties" not in attrs:
            raise serializers.ValidationError("Give `event_type`, `properties` or both.")
        return attrs


def _definitions(items: list[dict[str, Any]]) -> list[event_types.PropertyDefinitionInput]:
    return [event_types.PropertyDefinitionInput(**item) for item in items]


class EventTypeFilter(django_filters.FilterSet):
    key = django_filters.CharFilter(field_name="key")

    class Meta:
        model = EventType
        fields: list[str] = []


# ---------------------------------------------------------------- views

EVENT_TYPE_CREATED = envelope(
    "EventTypeCreated",
    inline_serializer("EventTypeId", fields={"event_type_id": serializers.CharField()}),
)
EVENT_TYPE_DETAIL = envelope("EventTypeDetail", EventTypeSerializer())


def _event_type_body(event_type_id: str) -> dict[str, Any]:
    return {"data": EventTypeSerializer(selectors.event_type_get(event_type_id=event_type_id)).data}


class EventTypeCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS, *filter_parameters(EventTypeFilter))
    @extend_schema(
        operation_id="event_types_list",
        responses={
            200: list_schema("EventTypeList", "event_types", EventTypeSerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="event_types",
                queryset=selectors.event_type_list(),
                filterset_class=EventTypeFilter,
                sort_fields=selectors.EVENT_TYPE_SORT_FIELDS,
                default_sort="key",
                default_descending=False,
                to_dict=EventTypeSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="event_types_create",
        description="A taken `key` is a 409 naming the existing `event_type_id`.",
        request=EventTypeCreateIn,
        responses={201: EVENT_TYPE_CREATED, **errors(400, 409, 413, 415, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = validated_body(request, EventTypeCreateIn)
        event_type = event_types.event_type_create(
            **body["event_type"], properties=_definitions(body["properties"])
        )
        return Response({"data": {"event_type_id": event_type.id}}, status=status.HTTP_201_CREATED)


class EventTypeDetailView(StrictAPIView):
    @extend_schema(
        operation_id="event_types_retrieve",
        responses={200: EVENT_TYPE_DETAIL, **errors(404)},
    )
    def get(self, request: Request, event_type_id: str) -> Response:
        return Response(_event_type_body(event_type_id))

    @extend_schema(
        operation_id="event_types_partial_update",
        description=(
            "Change fields under `event_type` (others keep their value) and/or replace the "
            "property definitions: `properties`, when given, becomes the complete list "
            "(definitions left out are removed; `[]` removes all). One transaction."
        ),
        request=EventTypeUpdateIn,
        responses={200: EVENT_TYPE_DETAIL, **errors(400, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, event_type_id: str) -> Response:
        event_type = selectors.event_type_get(event_type_id=event_type_id)
        body = validated_body(request, EventTypeUpdateIn)
        properties = body.get("properties")
        event_types.event_type_update(
            event_type=event_type,
            fields=body.get("event_type", {}),
            properties=None if properties is None else _definitions(properties),
        )
        return Response(_event_type_body(event_type_id))

    @extend_schema(
        operation_id="event_types_destroy",
        description="Returns the deleted event type. A type that has events is a 409.",
        responses={200: EVENT_TYPE_DETAIL, **errors(404, 409)},
    )
    def delete(self, request: Request, event_type_id: str) -> Response:
        event_type = selectors.event_type_get(event_type_id=event_type_id)
        deleted = EventTypeSerializer(event_type).data
        event_types.event_type_delete(event_type=event_type)
        return Response({"data": deleted})
