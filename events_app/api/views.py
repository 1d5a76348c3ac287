"""Events API (seed 004): thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events_app import selectors, services
from events_app.api.filters import EventFilter
from events_app.api.serializers import EventSerializer, PropertyRecordSerializer
from events_app.schemas import EventCreateIn
from project.api.body import parse_body
from project.api.listing import apply_filterset, list_envelope, parse_list_params
from project.api.schema import envelope, errors, msgspec_body
from project.api.schema import list_envelope as list_schema

LIST_PARAMETERS = [
    OpenApiParameter("count", int, description="Records to return, 1-1000 (default 100)."),
    OpenApiParameter("offset", int, description="Records to skip (default 0)."),
    OpenApiParameter("sort_field", str, description="Field to sort by."),
    OpenApiParameter("sort_direction", str, enum=["ASC", "DESC"], description="Default DESC."),
]
EVENT_FILTER_NAMES = tuple(EventFilter.base_filters)


def events_page(request: Request, queryset: Any, *, filters: bool = True) -> dict[str, Any]:
    """One page of events as `{"data": {"events": [...], "total_items": N}}`."""
    params = parse_list_params(
        request.query_params,
        sort_fields=selectors.EVENT_SORT_FIELDS,
        default_sort="created_at",
        filter_names=EVENT_FILTER_NAMES if filters else (),
    )
    if filters:
        queryset = apply_filterset(EventFilter, request.query_params, queryset)
    # One serializer for the whole page: building a ModelSerializer per row
    # costs more than the page's queries (~0.7 ms per event).
    serializer = EventSerializer()
    return list_envelope(
        key="events",
        queryset=queryset,
        params=params,
        sort_fields=selectors.EVENT_SORT_FIELDS,
        to_dict=serializer.to_representation,
        total=selectors.event_count(queryset=queryset),
        deferred_join=True,
    )


class EventCollectionView(APIView):
    @extend_schema(
        operation_id="events_list",
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("event_type_id", str),
            OpenApiParameter("customer_id", str),
            OpenApiParameter("external_id", str),
            OpenApiParameter("created_after", str, description="ISO 8601, inclusive."),
            OpenApiParameter("created_before", str, description="ISO 8601, exclusive."),
            OpenApiParameter("occurred_after", str, description="ISO 8601, inclusive."),
            OpenApiParameter("occurred_before", str, description="ISO 8601, exclusive."),
            OpenApiParameter("status", str, enum=["pending", "completed", "failed"]),
            OpenApiParameter("is_delivered", bool),
        ],
        responses={200: list_schema("EventList", "events", EventSerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(events_page(request, selectors.event_list()))

    @extend_schema(
        operation_id="events_create",
        request=msgspec_body(EventCreateIn),
        responses={
            201: envelope(
                "EventCreated",
                serializers.DictField(help_text='{"event_id": "…"}'),
            ),
            **errors(400, 409, 415),
        },
    )
    def post(self, request: Request) -> Response:
        body = parse_body(request, EventCreateIn)
        event = services.event_ingest(item=body)
        return Response({"data": {"event_id": event.id}}, status=status.HTTP_201_CREATED)


class EventDetailView(APIView):
    @extend_schema(
        operation_id="events_retrieve",
        responses={200: envelope("EventDetail", EventSerializer()), **errors(404)},
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = selectors.event_get(event_id=event_id)
        return Response({"data": EventSerializer(event).data})


class EventPropertyRecordsView(APIView):
    @extend_schema(
        operation_id="events_property_records_list",
        parameters=LIST_PARAMETERS,
        responses={
            200: list_schema("PropertyRecordList", "property_records", PropertyRecordSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = selectors.event_get(event_id=event_id)
        params = parse_list_params(
            request.query_params,
            sort_fields=selectors.PROPERTY_RECORD_SORT_FIELDS,
            default_sort="property_id",
            default_descending=False,
        )
        return Response(
            list_envelope(
                key="property_records",
                queryset=selectors.event_property_records(event=event),
                params=params,
                sort_fields=selectors.PROPERTY_RECORD_SORT_FIELDS,
                to_dict=lambda record: PropertyRecordSerializer(record).data,
            )
        )
