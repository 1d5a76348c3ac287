"""Schedules API (seed 003): thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.schedules import selectors, services
from automation.schedules.api.filters import FILTER_PARAMETERS, parse_schedule_filter
from automation.schedules.api.serializers import (
    PreviewSerializer,
    ScheduleCreatedSerializer,
    ScheduleCreateIn,
    SchedulePatchIn,
    ScheduleRunSerializer,
    ScheduleSerializer,
)
from project.api.body import parse_body
from project.api.errors import ApiError
from project.api.listing import filtered_list
from project.api.schema import envelope, errors, msgspec_body, paging_parameters
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params
from project.idempotency.views import idempotent

PAGING = paging_parameters("limit", "created_date (default), next_run_at, …")
DETAIL = envelope("ScheduleDetail", ScheduleSerializer())


def _data(schedule: Any, code: int = status.HTTP_200_OK) -> Response:
    return Response({"data": ScheduleSerializer(schedule).data}, status=code)


def _written(write: Callable[[], Any], serializer: type[ScheduleSerializer]) -> dict[str, Any]:
    """Run a service and shape its answer in one transaction: an answer that cannot be
    built (an error answer) leaves nothing written."""
    with transaction.atomic():
        return {"data": serializer(write()).data}


class ScheduleCollectionView(StrictAPIView):
    @query_params(*PAGING, *FILTER_PARAMETERS)
    @extend_schema(
        operation_id="schedules_list",
        responses={
            200: list_schema("ScheduleList", "schedules", ScheduleSerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        return Response(
            filtered_list(
                query,
                key="schedules",
                queryset=lambda: selectors.schedule_list(**parse_schedule_filter(query)),
                sort_fields=selectors.SCHEDULE_SORT_FIELDS,
                default_sort="created_date",
                count_param="limit",
                to_dict=ScheduleSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="schedules_create",
        request=msgspec_body(ScheduleCreateIn),
        responses={
            201: envelope("ScheduleCreatedEnvelope", ScheduleCreatedSerializer()),
            **errors(400, 415, 422),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, ScheduleCreateIn).schedule
        answer = _written(
            lambda: services.schedule_create(
                owner=body.owner,
                end_date=body.end_date,
                interval=body.interval,
                callback_url=body.callback_url,
                context=body.context,
                tags=body.tags,
                tz_name=body.timezone or "",
            ),
            ScheduleCreatedSerializer,
        )
        return Response(answer, status=status.HTTP_201_CREATED)


class SchedulePreviewView(StrictAPIView):
    @query_params(
        OpenApiParameter("interval", str, required=True, description="A cron expression."),
        OpenApiParameter("timezone", str, description="IANA zone (default UTC)."),
    )
    @extend_schema(
        operation_id="schedules_preview",
        responses={200: envelope("SchedulePreview", PreviewSerializer()), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        interval = request.query_params.get("interval")
        if interval is None:
            raise ApiError(
                "Query parameter 'interval' is required.",
                details={"interval": ["This parameter is required."]},
            )
        preview = services.schedule_preview(
            interval=interval, tz_name=request.query_params.get("timezone", "")
        )
        return Response({"data": PreviewSerializer(preview).data})


class ScheduleDetailView(StrictAPIView):
    @extend_schema(operation_id="schedules_retrieve", responses={200: DETAIL, **errors(404)})
    def get(self, request: Request, schedule_id: str) -> Response:
        return _data(selectors.schedule_get(schedule_id=schedule_id))

    @extend_schema(
        operation_id="schedules_update",
        request=msgspec_body(SchedulePatchIn),
        responses={200: DETAIL, **errors(400, 404, 409, 415)},
    )
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        body = parse_body(request, SchedulePatchIn).schedule
        fields = {
            name: getattr(body, name)
            for name in body.__struct_fields__
            if getattr(body, name) is not msgspec.UNSET
        }
        if not fields:
            raise ApiError("Nothing to change: give at least one field in 'schedule'.")
        answer = _written(
            lambda: services.schedule_update(schedule=schedule, fields=fields), ScheduleSerializer
        )
        return Response(answer)

    @extend_schema(operation_id="schedules_destroy", responses={200: DETAIL, **errors(404)})
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        return _data(services.schedule_delete(schedule=schedule))


class SchedulePauseView(StrictAPIView):
    @extend_schema(
        operation_id="schedules_pause", request=None, responses={200: DETAIL, **errors(404, 409)}
    )
    def post(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        return _data(services.schedule_pause(schedule=schedule))


class ScheduleResumeView(StrictAPIView):
    @extend_schema(
        operation_id="schedules_resume", request=None, responses={200: DETAIL, **errors(404, 409)}
    )
    def post(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        return _data(services.schedule_resume(schedule=schedule))


class ScheduleRunsView(StrictAPIView):
    @query_params(*PAGING)
    @extend_schema(
        operation_id="schedules_runs_list",
        responses={
            200: list_schema("ScheduleRunList", "runs", ScheduleRunSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.schedule_get(schedule_id=schedule_id)
        return Response(
            filtered_list(
                request.query_params,
                key="runs",
                queryset=selectors.schedule_runs(schedule=schedule),
                sort_fields=selectors.RUN_SORT_FIELDS,
                default_sort="scheduled_for",
                count_param="limit",
                to_dict=ScheduleRunSerializer().to_representation,
            )
        )
