"""Events API (seed 004): thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from typing import Any

import msgspec
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers.selectors import customer_get
from events_app import ingestion, selectors
from events_app.activity import batch_rejections_record
from events_app.api.event_patch import decode_event_patch, event_patch_apply, event_patch_schema
from events_app.api.filters import EventFilter
from events_app.api.serializers import EventSerializer, PropertyRecordSerializer
from events_app.ingestion import InvalidEvent
from events_app.payloads import event_payload
from events_app.schemas import MAX_BATCH_BYTES, EventBatchDoc, EventBatchIn, EventCreateIn
from project.api.body import (
    check_json_content_type,
    decode_json,
    decode_strict,
    parse_body,
    read_body_limited,
    validation_details,
)
from project.api.listing import filtered_list
from project.api.schema import (
    LIST_PARAMETERS,
    envelope,
    errors,
    filter_parameters,
    msgspec_body,
)
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params

_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status_code: int = 200) -> HttpResponse:
    """Encode with msgspec: the ingest responses skip DRF's renderer (several times slower)."""
    return HttpResponse(_encode(body), status=status_code, content_type="application/json")


# The query parameters of every view that answers with events_page.
EVENT_LIST_PARAMETERS = [*LIST_PARAMETERS, *filter_parameters(EventFilter)]


def events_page(request: Request, queryset: Any) -> dict[str, Any]:
    """One page of events as `{"data": {"events": [...], "total_items": N}}`."""
    return filtered_list(
        request.query_params,
        key="events",
        queryset=queryset,
        filterset_class=EventFilter,
        sort_fields=selectors.EVENT_SORT_FIELDS,
        default_sort="created_at",
        to_dict=event_payload,
        total=lambda filtered: selectors.event_count(queryset=filtered),
        deferred_join=True,
    )


class EventCollectionView(StrictAPIView):
    @query_params(*EVENT_LIST_PARAMETERS)
    @extend_schema(
        operation_id="events_list",
        responses={200: list_schema("EventList", "events", EventSerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(events_page(request, selectors.event_list()))

    @extend_schema(
        operation_id="events_create",
        description=(
            "Name the customer by exactly one of `customer_id`, `customer_external_id` "
            "(an alias works too) or `anonymous_id`; an unknown external or anonymous id "
            "creates the customer with the event. A 403 with the message "
            '"customer is suppressed" refuses an event naming a suppressed identifier.'
        ),
        request=msgspec_body(EventCreateIn),
        responses={
            201: envelope(
                "EventCreated",
                serializers.DictField(help_text='{"event_id": "…"}'),
            ),
            **errors(400, 409, 415),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        body = parse_body(request, EventCreateIn)
        event_id = ingestion.event_ingest(item=body, api_client_id=request.user.pk)
        return json_response({"data": {"event_id": event_id}}, status.HTTP_201_CREATED)


_BATCH_RESULT_DOC = serializers.DictField(
    help_text=(
        '{"valid_events": [{"index", "event_id", "event_type_id", "customer_id", '
        '"external_id"}], "invalid_events": [{"index", "event" (as sent), "error", '
        '"details", "event_id" (the stored event, for duplicate refs)}]}. An event naming '
        'a suppressed identifier is invalid with the error "customer is suppressed".'
    )
)


class EventBatchView(StrictAPIView):
    @extend_schema(
        operation_id="events_batch_create",
        request=msgspec_body(EventBatchDoc),
        responses={200: envelope("EventBatchResult", _BATCH_RESULT_DOC), **errors(400, 413, 415)},
    )
    def post(self, request: Request) -> HttpResponse:
        check_json_content_type(request)
        batch = decode_json(read_body_limited(request, MAX_BATCH_BYTES), EventBatchIn)
        items, positions, invalid = _decode_items(batch.events)
        result = ingestion.events_ingest_batch(items=items, api_client_id=request.user.pk)
        for problem in result.invalid:
            problem.index = positions[problem.index]
        invalid = sorted([*invalid, *result.invalid], key=lambda i: i.index)
        batch_rejections_record(api_client=request.user, invalid=invalid, sent=batch.events)
        return json_response(
            {
                "data": {
                    "valid_events": [
                        {
                            "index": positions[e.index],
                            "event_id": e.id,
                            "event_type_id": e.event_type_id,
                            "customer_id": e.customer_id,
                            "external_id": e.external_id,
                        }
                        for e in result.stored
                    ],
                    "invalid_events": [_invalid_out(i, batch.events[i.index]) for i in invalid],
                }
            }
        )


def _decode_items(
    raw_items: list[msgspec.Raw],
) -> tuple[list[EventCreateIn], list[int], list[InvalidEvent]]:
    """Decode each item on its own, so one malformed event does not sink the batch.

    Returns the decoded items, each one's position in the batch, and the malformed.
    """
    items: list[EventCreateIn] = []
    positions: list[int] = []
    invalid: list[InvalidEvent] = []
    for index, raw in enumerate(raw_items):
        try:
            items.append(decode_strict(bytes(raw), EventCreateIn))
            positions.append(index)
        except msgspec.ValidationError as exc:
            message, details = validation_details(exc)
            field = next(iter(details))
            error = message if field == "non_field_errors" else f"{field}: {message}"
            invalid.append(InvalidEvent(index, error, details))
    return items, positions, invalid


def _invalid_out(problem: InvalidEvent, sent: msgspec.Raw) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": problem.index,
        "event": sent,  # echoed byte for byte
        "error": problem.error,
        "details": problem.details,
    }
    if problem.event_id is not None:
        out["event_id"] = problem.event_id
    return out


class EventDetailView(StrictAPIView):
    @extend_schema(
        operation_id="events_retrieve",
        responses={200: envelope("EventDetail", EventSerializer()), **errors(404)},
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = selectors.event_get(event_id=event_id)
        return Response({"data": EventSerializer(event).data})

    @extend_schema(
        operation_id="events_partial_update",
        request=msgspec_body(event_patch_schema()),
        responses={200: envelope("EventUpdated", EventSerializer()), **errors(400, 404, 409, 415)},
    )
    def patch(self, request: Request, event_id: str) -> Response:
        values = decode_event_patch(parse_body(request, dict[str, msgspec.Raw]))
        event_patch_apply(event_id=event_id, values=values)
        event = selectors.event_get(event_id=event_id)
        return Response({"data": EventSerializer(event).data})


class EventPropertyRecordsView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="events_property_records_list",
        responses={
            200: list_schema("PropertyRecordList", "property_records", PropertyRecordSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, event_id: str) -> Response:
        event = selectors.event_get(event_id=event_id)
        return Response(
            filtered_list(
                request.query_params,
                key="property_records",
                queryset=selectors.event_property_records(event=event),
                sort_fields=selectors.PROPERTY_RECORD_SORT_FIELDS,
                default_sort="property_id",
                default_descending=False,
                to_dict=PropertyRecordSerializer().to_representation,
            )
        )


class CustomerEventsView(StrictAPIView):
    @query_params(*EVENT_LIST_PARAMETERS)
    @extend_schema(
        operation_id="customers_events_list",
        description="The customer's events, with the parameters and envelope of GET /events.",
        responses={
            200: list_schema("CustomerEventList", "events", EventSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id)
        return Response(events_page(request, selectors.customer_events(customer=customer)))
