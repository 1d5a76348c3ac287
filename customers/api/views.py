"""Customers API: thin views that parse, call one service or selector, shape output."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers import selectors, services
from customers.api.filters import CustomerFilter
from customers.api.serializers import CustomerCreateIn, CustomerSerializer, CustomerUpdateIn
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, filter_parameters
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params, validated_body
from project.idempotency.views import idempotent

CUSTOMER_CREATED = envelope(
    "CustomerCreated",
    inline_serializer("CustomerId", fields={"customer_id": serializers.CharField()}),
)
CUSTOMER_DETAIL = envelope("CustomerDetail", CustomerSerializer())


class CustomerCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS, *filter_parameters(CustomerFilter))
    @extend_schema(
        operation_id="customers_list",
        responses={
            200: list_schema("CustomerList", "customers", CustomerSerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="customers",
                queryset=selectors.customer_list(),
                filterset_class=CustomerFilter,
                sort_fields=selectors.CUSTOMER_SORT_FIELDS,
                default_sort="created_at",
                to_dict=CustomerSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="customers_create",
        description="A taken `external_id` is a 409 naming the existing `customer_id`.",
        request=CustomerCreateIn,
        responses={201: CUSTOMER_CREATED, **errors(400, 409, 413, 415, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = validated_body(request, CustomerCreateIn)
        customer = services.customer_create(**body["customer"])
        return Response({"data": {"customer_id": customer.id}}, status=status.HTTP_201_CREATED)


class CustomerDetailView(StrictAPIView):
    @extend_schema(
        operation_id="customers_retrieve",
        responses={200: CUSTOMER_DETAIL, **errors(404)},
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id)
        return Response({"data": CustomerSerializer(customer).data})

    @extend_schema(
        operation_id="customers_partial_update",
        description=(
            "Fields under `customer` that are given are changed, the rest keep their value; "
            "`attributes` and `tags` are replaced as a whole."
        ),
        request=CustomerUpdateIn,
        responses={200: CUSTOMER_DETAIL, **errors(400, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id)
        body = validated_body(request, CustomerUpdateIn)
        customer = services.customer_update(customer=customer, fields=dict(body["customer"]))
        return Response({"data": CustomerSerializer(customer).data})

    @extend_schema(
        operation_id="customers_destroy",
        description=(
            "Returns the deleted customer. Deletes all of the customer's events with it, "
            "and their property records, webhook deliveries and workflow runs."
        ),
        responses={200: CUSTOMER_DETAIL, **errors(404)},
    )
    def delete(self, request: Request, customer_id: str) -> Response:
        customer = selectors.customer_get(customer_id=customer_id)
        deleted: dict[str, Any] = CustomerSerializer(customer).data
        services.customer_delete(customer=customer)
        return Response({"data": deleted})
