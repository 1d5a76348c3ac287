"""/webhooks and /deliveries: thin views over automation.webhooks.services, .delivery and
.delivery_selectors."""

from __future__ import annotations

from typing import Any

import msgspec
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from automation.webhooks.api.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    WebhookCreateIn,
    WebhookSerializer,
    WebhookUpdateIn,
    WebhookWithSecretSerializer,
)
from automation.webhooks.deliveries import delivery_redeliver
from automation.webhooks.models import Delivery
from automation.webhooks.selectors import delivery_get, delivery_list, webhook_get, webhook_list
from automation.webhooks.services import (
    endpoint_create,
    endpoint_delete,
    endpoint_ping,
    endpoint_rotate_secret,
    endpoint_update,
)
from project.api.body import parse_body
from project.api.errors import ApiError
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, msgspec_body
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params
from project.idempotency.views import idempotent

WEBHOOK_SORT_FIELDS = {"created_at": "created_at", "url": "url", "webhook_id": "pk"}
DELIVERY_SORT_FIELDS = {"created_at": "pk", "delivery_id": "pk"}


def _webhook_data(endpoint: Any) -> dict[str, Any]:
    return dict(WebhookSerializer(endpoint).data)


class WebhookCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="webhooks_list",
        responses={200: list_schema("WebhookList", "webhooks", WebhookSerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="webhooks",
                queryset=webhook_list(),
                sort_fields=WEBHOOK_SORT_FIELDS,
                default_sort="created_at",
                to_dict=_webhook_data,
            )
        )

    @extend_schema(
        operation_id="webhooks_create",
        request=msgspec_body(WebhookCreateIn),
        responses={
            201: envelope("WebhookCreated", WebhookWithSecretSerializer()),
            **errors(400, 415, 422),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, WebhookCreateIn).webhook
        endpoint, _secret = endpoint_create(
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            active=body.active,
        )
        data = WebhookWithSecretSerializer(endpoint).data
        return Response({"data": data}, status=status.HTTP_201_CREATED)


class WebhookDetailView(StrictAPIView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        responses={200: envelope("WebhookDetail", WebhookSerializer()), **errors(404)},
    )
    def get(self, request: Request, webhook_id: str) -> Response:
        return Response({"data": _webhook_data(webhook_get(webhook_id=webhook_id))})

    @extend_schema(
        operation_id="webhooks_update",
        request=msgspec_body(WebhookUpdateIn),
        responses={200: envelope("WebhookUpdated", WebhookSerializer()), **errors(400, 404, 415)},
    )
    def patch(self, request: Request, webhook_id: str) -> Response:
        endpoint = webhook_get(webhook_id=webhook_id)
        body = parse_body(request, WebhookUpdateIn).webhook
        fields = {
            name: getattr(body, name)
            for name in body.__struct_fields__
            if getattr(body, name) is not msgspec.UNSET
        }
        if not fields:
            raise ApiError("Give at least one field to update (url, description, ...).")
        endpoint = endpoint_update(endpoint=endpoint, fields=fields)
        return Response({"data": _webhook_data(webhook_get(webhook_id=endpoint.pk))})

    @extend_schema(
        operation_id="webhooks_delete",
        responses={200: envelope("WebhookDeleted", WebhookSerializer()), **errors(404)},
    )
    def delete(self, request: Request, webhook_id: str) -> Response:
        endpoint = webhook_get(webhook_id=webhook_id)
        deleted = _webhook_data(endpoint)
        endpoint_delete(endpoint=endpoint)
        return Response({"data": deleted})


class WebhookRotateSecretView(StrictAPIView):
    @extend_schema(
        operation_id="webhooks_rotate_secret",
        request=None,
        responses={
            200: envelope("WebhookRotated", WebhookWithSecretSerializer()),
            **errors(404, 422),
        },
    )
    @idempotent
    def post(self, request: Request, webhook_id: str) -> Response:
        endpoint = webhook_get(webhook_id=webhook_id)
        endpoint_rotate_secret(endpoint=endpoint)
        return Response({"data": WebhookWithSecretSerializer(endpoint).data})


class WebhookTestView(StrictAPIView):
    @extend_schema(
        operation_id="webhooks_test",
        request=None,
        responses={202: envelope("WebhookPing", DeliverySerializer()), **errors(404)},
    )
    def post(self, request: Request, webhook_id: str) -> Response:
        endpoint = webhook_get(webhook_id=webhook_id)
        delivery = endpoint_ping(endpoint=endpoint)
        return Response(
            {"data": DeliverySerializer(delivery).data}, status=status.HTTP_202_ACCEPTED
        )


class DeliveryCollectionView(StrictAPIView):
    @query_params(
        *LIST_PARAMETERS,
        OpenApiParameter("webhook_id", str, allow_blank=False),
        OpenApiParameter("event_id", str, allow_blank=False),
        OpenApiParameter("customer_id", str, allow_blank=False),
        OpenApiParameter("status", str, enum=list(Delivery.Status.values), allow_blank=False),
    )
    @extend_schema(
        operation_id="deliveries_list",
        responses={
            200: list_schema("DeliveryList", "deliveries", DeliverySerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        query = request.query_params

        def deliveries() -> QuerySet[Delivery]:
            state = query.get("status")
            if state is not None and state not in Delivery.Status.values:
                allowed = ", ".join(Delivery.Status.values)
                raise ApiError(
                    f"Invalid query parameter 'status': one of {allowed}.",
                    details={"status": [f"One of: {allowed}."]},
                )
            return delivery_list(
                webhook_id=query.get("webhook_id"),
                event_id=query.get("event_id"),
                customer_id=query.get("customer_id"),
                status=state,
            )

        return Response(
            filtered_list(
                query,
                key="deliveries",
                queryset=deliveries,
                sort_fields=DELIVERY_SORT_FIELDS,
                default_sort="created_at",
                to_dict=DeliverySerializer().to_representation,
            )
        )


class DeliveryDetailView(StrictAPIView):
    @extend_schema(
        operation_id="deliveries_retrieve",
        responses={
            200: envelope("DeliveryWithAttempts", DeliveryDetailSerializer()),
            **errors(404),
        },
    )
    def get(self, request: Request, delivery_id: str) -> Response:
        delivery = delivery_get(delivery_id=delivery_id, with_attempts=True)
        return Response({"data": DeliveryDetailSerializer(delivery).data})


class DeliveryRedeliverView(StrictAPIView):
    @extend_schema(
        operation_id="deliveries_redeliver",
        request=None,
        responses={202: envelope("DeliveryRedelivered", DeliverySerializer()), **errors(404, 409)},
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        delivery = delivery_get(delivery_id=delivery_id)
        delivery = delivery_redeliver(delivery=delivery)
        return Response(
            {"data": DeliverySerializer(delivery).data}, status=status.HTTP_202_ACCEPTED
        )
