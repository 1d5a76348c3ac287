"""Workflows API: thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.workflows import dry_run, selectors, services
from automation.workflows.api.serializers import (
    WorkflowBody,
    WorkflowRunSerializer,
    WorkflowSecretsSerializer,
    WorkflowSerializer,
    WorkflowTestIn,
)
from automation.workflows.models import Workflow, WorkflowRun
from project.api.body import parse_body
from project.api.errors import ApiError
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, msgspec_body
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, bool_query_param, query_params
from project.idempotency.views import idempotent

RUN_STATUSES = [choice.value for choice in WorkflowRun.Status]


def _input(body: WorkflowBody) -> services.WorkflowInput:
    w = body.workflow
    return services.WorkflowInput(
        name=w.name,
        trigger_event_types=w.trigger_event_types,
        trigger_segments=(
            None
            if w.trigger_segments is None
            else [{"segment": t.segment, "on": t.on} for t in w.trigger_segments]
        ),
        conditions=w.conditions,
        actions=w.actions,
        active=w.active,
        reentry=w.reentry,
        delivery_policy=w.delivery_policy,
    )


def _secrets(workflow: Workflow, secrets: dict[str, str] | None = None) -> dict[str, Any]:
    if secrets is None:
        secrets = selectors.workflow_webhook_secrets(workflow=workflow)
    return {"workflow_id": workflow.pk, "webhook_secrets": secrets}


class WorkflowCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS, OpenApiParameter("active", bool, allow_blank=False))
    @extend_schema(
        operation_id="workflows_list",
        responses={
            200: list_schema("WorkflowList", "workflows", WorkflowSerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        def workflows() -> QuerySet[Workflow]:
            queryset = selectors.workflow_list()
            active = bool_query_param(request, "active")
            return queryset if active is None else queryset.filter(active=active)

        return Response(
            filtered_list(
                request.query_params,
                key="workflows",
                queryset=workflows,
                sort_fields=selectors.WORKFLOW_SORT_FIELDS,
                default_sort="created_at",
                to_dict=WorkflowSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="workflows_create",
        request=msgspec_body(WorkflowBody),
        responses={
            201: envelope("WorkflowCreated", WorkflowSecretsSerializer()),
            **errors(400, 415, 422),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, WorkflowBody)
        workflow = services.workflow_create(data=_input(body))
        return Response({"data": _secrets(workflow)}, status=status.HTTP_201_CREATED)


class WorkflowDetailView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_retrieve",
        responses={200: envelope("WorkflowDetail", WorkflowSerializer()), **errors(404)},
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        return Response({"data": WorkflowSerializer(workflow).data})

    @extend_schema(
        operation_id="workflows_update",
        request=msgspec_body(WorkflowBody),
        responses={200: envelope("WorkflowUpdated", WorkflowSerializer()), **errors(400, 404, 415)},
    )
    def patch(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        body = parse_body(request, WorkflowBody)
        workflow = services.workflow_update(workflow=workflow, data=_input(body))
        workflow = selectors.workflow_get(workflow_id=workflow.pk)
        return Response({"data": WorkflowSerializer(workflow).data})

    @extend_schema(
        operation_id="workflows_destroy",
        responses={200: envelope("WorkflowDeleted", WorkflowSerializer()), **errors(404)},
    )
    def delete(self, request: Request, workflow_id: str) -> Response:
        # 200 with the deleted object, like every other DELETE of the API.
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        deleted = WorkflowSerializer(workflow).data
        services.workflow_delete(workflow=workflow)
        return Response({"data": deleted})


class _SetActiveView(StrictAPIView):
    active: bool

    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        services.workflow_set_active(workflow=workflow, active=self.active)
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        return Response({"data": WorkflowSerializer(workflow).data})


class WorkflowActivateView(_SetActiveView):
    active = True

    @extend_schema(
        operation_id="workflows_activate",
        request=None,
        responses={200: envelope("WorkflowActivated", WorkflowSerializer()), **errors(404)},
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        return super().post(request, workflow_id)


class WorkflowDeactivateView(_SetActiveView):
    active = False

    @extend_schema(
        operation_id="workflows_deactivate",
        request=None,
        responses={200: envelope("WorkflowDeactivated", WorkflowSerializer()), **errors(404)},
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        return super().post(request, workflow_id)


class WorkflowRevealSecretsView(StrictAPIView):
    """The signing secrets, on an explicit POST (so only a write-scope key sees them)."""

    @extend_schema(
        operation_id="workflows_reveal_secrets",
        request=None,
        responses={
            200: envelope("WorkflowSecretsRevealed", WorkflowSecretsSerializer()),
            **errors(404),
        },
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        revealed = services.workflow_webhook_secrets_reveal(workflow=workflow)
        return Response({"data": _secrets(workflow, revealed)})


class WorkflowRotateSecretsView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_rotate_secrets",
        request=None,
        responses={
            200: envelope("WorkflowSecretsRotated", WorkflowSecretsSerializer()),
            **errors(404, 422),
        },
    )
    @idempotent
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        rotated = services.workflow_webhook_secrets_rotate(workflow=workflow)
        return Response({"data": _secrets(workflow, rotated)})


class WorkflowRunsView(StrictAPIView):
    @query_params(
        *LIST_PARAMETERS, OpenApiParameter("status", str, enum=RUN_STATUSES, allow_blank=False)
    )
    @extend_schema(
        operation_id="workflows_runs_list",
        responses={
            200: list_schema("WorkflowRunList", "workflow_runs", WorkflowRunSerializer),
            **errors(400, 404),
        },
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)

        def runs() -> QuerySet[WorkflowRun]:
            queryset = selectors.workflow_runs(workflow=workflow)
            wanted = request.query_params.get("status")
            if not wanted:
                return queryset
            if wanted not in RUN_STATUSES:
                raise ApiError(
                    f"Unknown status '{wanted}'.",
                    details={"status": [f"One of: {', '.join(RUN_STATUSES)}."]},
                )
            return queryset.filter(status=wanted)

        return Response(
            filtered_list(
                request.query_params,
                key="workflow_runs",
                queryset=runs,
                sort_fields=selectors.RUN_SORT_FIELDS,
                default_sort="created_at",
                to_dict=WorkflowRunSerializer().to_representation,
            )
        )


class WorkflowTestView(StrictAPIView):
    @extend_schema(
        operation_id="workflows_test",
        request=msgspec_body(WorkflowTestIn),
        responses={
            200: envelope(
                "WorkflowTestResult",
                serializers.DictField(help_text="The explanation (docs/automation.md)."),
            ),
            **errors(400, 404, 415),
        },
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get(workflow_id=workflow_id)
        body = parse_body(request, WorkflowTestIn)
        result: dict[str, Any] = dry_run.workflow_test_request(
            workflow=workflow,
            event_id=body.event_id,
            event=body.event,
            property_records=body.property_records,
        )
        return Response({"data": result})
