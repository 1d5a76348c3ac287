"""Delivery policies API: thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.workflows.policies import selectors, services
from automation.workflows.policies.api.serializers import (
    DeliveryPolicySerializer,
    PolicyBody,
    policy_data,
)
from project.api.body import parse_body
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, msgspec_body
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params
from project.idempotency.views import idempotent


def _shown(policy_id: str) -> dict[str, object]:
    return dict(DeliveryPolicySerializer(selectors.delivery_policy_get(policy_id=policy_id)).data)


class DeliveryPolicyCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="delivery_policies_list",
        responses={
            200: list_schema("DeliveryPolicyList", "delivery_policies", DeliveryPolicySerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="delivery_policies",
                queryset=selectors.delivery_policy_list,
                sort_fields=selectors.POLICY_SORT_FIELDS,
                default_sort="created_at",
                to_dict=DeliveryPolicySerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="delivery_policies_create",
        request=msgspec_body(PolicyBody),
        responses={
            201: envelope("DeliveryPolicyCreated", DeliveryPolicySerializer()),
            **errors(400, 409, 422),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, PolicyBody)
        policy = services.delivery_policy_create(data=policy_data(body))
        return Response({"data": _shown(policy.pk)}, status=status.HTTP_201_CREATED)


class DeliveryPolicyDetailView(StrictAPIView):
    @extend_schema(
        operation_id="delivery_policies_retrieve",
        description="A delivery policy by id or by key.",
        responses={
            200: envelope("DeliveryPolicyDetail", DeliveryPolicySerializer()),
            **errors(404),
        },
    )
    def get(self, request: Request, policy_id: str) -> Response:
        return Response({"data": _shown(policy_id)})

    @extend_schema(
        operation_id="delivery_policies_update",
        description="Changes the given fields; runs under way obey the result from their "
        "next action on.",
        request=msgspec_body(PolicyBody),
        responses={
            200: envelope("DeliveryPolicyUpdated", DeliveryPolicySerializer()),
            **errors(400, 404, 409),
        },
    )
    def patch(self, request: Request, policy_id: str) -> Response:
        policy = selectors.delivery_policy_get(policy_id=policy_id)
        body = parse_body(request, PolicyBody)
        policy = services.delivery_policy_update(policy=policy, data=policy_data(body))
        return Response({"data": _shown(policy.pk)})

    @extend_schema(
        operation_id="delivery_policies_replace",
        description="Replaces the whole policy: absent caps, quiet_hours and on_blocked "
        "take their defaults (none, none, skip).",
        request=msgspec_body(PolicyBody),
        responses={
            200: envelope("DeliveryPolicyReplaced", DeliveryPolicySerializer()),
            **errors(400, 404, 409),
        },
    )
    def put(self, request: Request, policy_id: str) -> Response:
        policy = selectors.delivery_policy_get(policy_id=policy_id)
        body = parse_body(request, PolicyBody)
        policy = services.delivery_policy_update(
            policy=policy, data=policy_data(body), replace=True
        )
        return Response({"data": _shown(policy.pk)})

    @extend_schema(
        operation_id="delivery_policies_destroy",
        description="Deletes the policy and its ledger; 409 while a workflow names it.",
        responses={
            200: envelope("DeliveryPolicyDeleted", DeliveryPolicySerializer()),
            **errors(404, 409),
        },
    )
    def delete(self, request: Request, policy_id: str) -> Response:
        policy = selectors.delivery_policy_get(policy_id=policy_id)
        deleted = DeliveryPolicySerializer(policy).data
        services.delivery_policy_delete(policy=policy)
        return Response({"data": deleted})
