"""Segments API: thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.segments import broadcasts, selectors, services
from automation.segments.api.serializers import (
    CustomerSegmentSerializer,
    SegmentBody,
    SegmentBroadcastIn,
    SegmentBroadcastSerializer,
    SegmentMemberSerializer,
    SegmentPreviewIn,
    SegmentPreviewSerializer,
    SegmentSerializer,
)
from automation.segments.models import SegmentMembership
from automation.segments.preview import segment_preview
from customers.selectors import customer_get
from project.api.body import parse_body
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, msgspec_body
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, bool_query_param, query_params
from project.idempotency.views import idempotent


def _input(body: SegmentBody) -> services.SegmentInput:
    s = body.segment
    return services.SegmentInput(
        key=s.key, name=s.name, description=s.description, condition=s.condition
    )


def _shown(segment_id: str) -> dict[str, object]:
    return dict(SegmentSerializer(selectors.segment_get(segment_id=segment_id)).data)


class SegmentCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="segments_list",
        responses={200: list_schema("SegmentList", "segments", SegmentSerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="segments",
                queryset=selectors.segment_list,
                sort_fields=selectors.SEGMENT_SORT_FIELDS,
                default_sort="created_at",
                to_dict=SegmentSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="segments_create",
        request=msgspec_body(SegmentBody),
        responses={201: envelope("SegmentCreated", SegmentSerializer()), **errors(400, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, SegmentBody)
        segment = services.segment_create(data=_input(body))
        return Response({"data": _shown(segment.pk)}, status=status.HTTP_201_CREATED)


class SegmentDetailView(StrictAPIView):
    @extend_schema(
        operation_id="segments_retrieve",
        description="A segment by id or by key.",
        responses={200: envelope("SegmentDetail", SegmentSerializer()), **errors(404)},
    )
    def get(self, request: Request, segment_id: str) -> Response:
        return Response({"data": _shown(segment_id)})

    @extend_schema(
        operation_id="segments_update",
        description="A changed condition rebuilds the membership in the background "
        "(status building, then ready).",
        request=msgspec_body(SegmentBody),
        responses={200: envelope("SegmentUpdated", SegmentSerializer()), **errors(400, 404, 409)},
    )
    def patch(self, request: Request, segment_id: str) -> Response:
        segment = selectors.segment_get(segment_id=segment_id)
        body = parse_body(request, SegmentBody)
        segment = services.segment_update(segment=segment, data=_input(body))
        return Response({"data": _shown(segment.pk)})

    @extend_schema(
        operation_id="segments_destroy",
        description="Deletes the segment and its membership history; 409 while another "
        "segment's condition reads it.",
        responses={200: envelope("SegmentDeleted", SegmentSerializer()), **errors(404, 409)},
    )
    def delete(self, request: Request, segment_id: str) -> Response:
        segment = selectors.segment_get(segment_id=segment_id)
        deleted = SegmentSerializer(segment).data
        services.segment_delete(segment=segment)
        return Response({"data": deleted})


class SegmentMembersView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="segments_members_list",
        responses={
            200: list_schema("SegmentMemberList", "members", SegmentMemberSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, segment_id: str) -> Response:
        segment = selectors.segment_get(segment_id=segment_id)
        return Response(
            filtered_list(
                request.query_params,
                key="members",
                queryset=lambda: selectors.segment_members(segment=segment),
                sort_fields=selectors.MEMBER_SORT_FIELDS,
                default_sort="entered_at",
                to_dict=SegmentMemberSerializer().to_representation,
            )
        )


class CustomerSegmentsView(StrictAPIView):
    @query_params(
        *LIST_PARAMETERS,
        OpenApiParameter("history", bool, allow_blank=False, description="Also past memberships."),
    )
    @extend_schema(
        operation_id="customers_segments_list",
        description="The segments the customer is in now (exited_at null); with "
        "history=true also past memberships, one item per stay.",
        responses={
            200: list_schema("CustomerSegmentList", "segments", CustomerSegmentSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = customer_get(customer_id=customer_id)

        def memberships() -> QuerySet[SegmentMembership]:
            history = bool_query_param(request, "history") or False
            return selectors.customer_segments(customer_id=customer.pk, history=history)

        return Response(
            filtered_list(
                request.query_params,
                key="segments",
                queryset=memberships,
                sort_fields=selectors.CUSTOMER_SEGMENT_SORT_FIELDS,
                default_sort="entered_at",
                to_dict=CustomerSegmentSerializer().to_representation,
            )
        )


class SegmentPreviewView(StrictAPIView):
    @extend_schema(
        operation_id="segments_preview",
        description="Evaluates a condition for every customer now; stores nothing.",
        request=msgspec_body(SegmentPreviewIn),
        responses={
            200: envelope("SegmentPreviewResult", SegmentPreviewSerializer()),
            **errors(400, 404),
        },
    )
    def post(self, request: Request) -> Response:
        body = parse_body(request, SegmentPreviewIn)
        result = segment_preview(condition=body.condition, customer_id=body.customer_id)
        return Response({"data": result})


class SegmentBroadcastView(StrictAPIView):
    @extend_schema(
        operation_id="segments_broadcast",
        description="Runs the workflow's actions (without its conditions) once for every "
        "customer who is a member now. 202 with the broadcast; the same broadcast_key again "
        "answers 200 with the existing broadcast and starts nothing (409 if it was used for "
        "another segment or workflow, or the workflow is inactive, or the segment is being "
        "built).",
        request=msgspec_body(SegmentBroadcastIn),
        responses={
            202: envelope("SegmentBroadcastStarted", SegmentBroadcastSerializer()),
            200: envelope("SegmentBroadcastExisting", SegmentBroadcastSerializer()),
            **errors(400, 404, 409),
        },
    )
    def post(self, request: Request, segment_id: str) -> Response:
        segment = selectors.segment_get(segment_id=segment_id)
        body = parse_body(request, SegmentBroadcastIn)
        broadcast, started = broadcasts.broadcast_start(
            segment=segment, workflow_id=body.workflow_id, broadcast_key=body.broadcast_key
        )
        return Response(
            {"data": SegmentBroadcastSerializer(broadcast).data},
            status=status.HTTP_202_ACCEPTED if started else status.HTTP_200_OK,
        )


class SegmentBroadcastDetailView(StrictAPIView):
    @extend_schema(
        operation_id="segments_broadcast_retrieve",
        description="A broadcast's progress: status (running, done, cancelled), "
        "members_total, members_done.",
        responses={
            200: envelope("SegmentBroadcastDetail", SegmentBroadcastSerializer()),
            **errors(404),
        },
    )
    def get(self, request: Request, segment_id: str, broadcast_key: str) -> Response:
        segment = selectors.segment_get(segment_id=segment_id)
        broadcast = broadcasts.broadcast_get(segment=segment, broadcast_key=broadcast_key)
        return Response({"data": SegmentBroadcastSerializer(broadcast).data})
