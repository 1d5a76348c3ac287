"""Identity API: identify, merge (and its dry run), merge records and their undo."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from customers.api.serializers import CustomerSerializer
from customers.identity import selectors, services
from customers.identity.api.filters import MergeFilter
from customers.identity.api.serializers import (
    IdentifyIn,
    MergeIn,
    MergePreviewSerializer,
    MergeSerializer,
)
from customers.identity.models import CustomerMerge
from customers.models import Customer
from project.api.body import parse_body
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors, filter_parameters, msgspec_body
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params
from project.idempotency.views import idempotent

# A merge answers the customer and its record; a dry run answers the preview.
MERGE_RESULT = envelope(
    "CustomerMergeResult",
    PolymorphicProxySerializer(
        component_name="CustomerMergeAnswer",
        serializers=[
            inline_serializer(
                "CustomerMerged",
                fields={
                    "customer": CustomerSerializer(),
                    "merge_id": serializers.CharField(),
                    "merge": MergeSerializer(),
                },
            ),
            MergePreviewSerializer,
        ],
        resource_type_field_name=None,
    ),
)
IDENTIFY_RESULT = envelope(
    "CustomerIdentifyResult",
    inline_serializer(
        "CustomerIdentified",
        fields={
            "customer": CustomerSerializer(),
            "merge_id": serializers.CharField(
                allow_null=True, help_text="The merge this call made, else null."
            ),
        },
    ),
)
MERGE_DETAIL = envelope("CustomerMergeDetail", MergeSerializer())


def _customer(customer_id: str) -> dict[str, object]:
    return CustomerSerializer(Customer.objects.get(pk=customer_id)).data


class CustomerIdentifyView(StrictAPIView):
    @extend_schema(
        operation_id="customers_identify",
        description=(
            "Ties an anonymous id to an external id. No customer has the external id: the "
            "anonymous customer becomes it (created when none has the anonymous id "
            "either). One does: the anonymous customer is merged into it (`merge_id`). "
            "`attributes` are merged into the result key by key. The same call again "
            "changes nothing. 409 when the anonymous id belongs to a customer identified "
            "as someone else."
        ),
        request=msgspec_body(IdentifyIn),
        responses={200: IDENTIFY_RESULT, **errors(400, 409)},
    )
    def post(self, request: Request) -> Response:
        body = parse_body(request, IdentifyIn)
        found = services.customer_identify(
            anonymous_id=body.anonymous_id,
            external_id=body.external_id,
            attributes=body.attributes,
        )
        return Response(
            {
                "data": {
                    "customer": _customer(found.customer.pk),
                    "merge_id": found.merge.pk if found.merge else None,
                }
            }
        )


class CustomerMergeView(StrictAPIView):
    @extend_schema(
        operation_id="customers_merge",
        description=(
            "Moves everything of the secondary customer to the primary and deletes the "
            "secondary; its ids become the primary's aliases. `dry_run: true` answers what "
            "would move (MergePreview) and changes nothing. Two identified customers merge "
            "only with `force: true` (409 otherwise). 400 when primary equals secondary."
        ),
        request=msgspec_body(MergeIn),
        responses={
            200: MERGE_RESULT,
            **errors(400, 404, 409, 422),
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        body = parse_body(request, MergeIn)
        result = services.customer_merge(
            primary_id=body.primary,
            secondary_id=body.secondary,
            force=body.force,
            dry_run=body.dry_run,
        )
        if not isinstance(result, CustomerMerge):
            return Response({"data": result})
        return Response(
            {
                "data": {
                    "customer": _customer(result.primary_id),
                    "merge_id": result.pk,
                    "merge": MergeSerializer(result).data,
                }
            }
        )


class MergeCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS, *filter_parameters(MergeFilter))
    @extend_schema(
        operation_id="customers_merges_list",
        responses={200: list_schema("CustomerMergeList", "merges", MergeSerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="merges",
                queryset=selectors.merge_list(),
                filterset_class=MergeFilter,
                sort_fields=selectors.MERGE_SORT_FIELDS,
                default_sort="created_at",
                to_dict=MergeSerializer().to_representation,
            )
        )


class MergeDetailView(StrictAPIView):
    @extend_schema(
        operation_id="customers_merges_retrieve",
        responses={200: MERGE_DETAIL, **errors(404)},
    )
    def get(self, request: Request, merge_id: str) -> Response:
        return Response({"data": MergeSerializer(selectors.merge_get(merge_id=merge_id)).data})


class MergeUndoView(StrictAPIView):
    @extend_schema(
        operation_id="customers_merges_undo",
        description=(
            "Puts back everything the merge changed, events included. 409 when it was "
            "undone already, is older than the undo window (HERALD_MERGE_UNDO_DAYS), a "
            "later merge involves either customer, or the primary was deleted since."
        ),
        request=None,
        responses={200: MERGE_DETAIL, **errors(404, 409)},
    )
    def post(self, request: Request, merge_id: str) -> Response:
        merge = services.merge_undo(merge_id=merge_id)
        return Response({"data": MergeSerializer(merge).data})
