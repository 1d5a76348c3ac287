"""Privacy requests API: file one, read its status (its audit record), list them, and
download an export."""

from __future__ import annotations

from itertools import chain
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers.privacy import selectors, services
from customers.privacy.api.serializers import PrivacyRequestIn, PrivacyRequestSerializer
from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, envelope, errors
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params, validated_body

PRIVACY_REQUEST_FILED = envelope(
    "PrivacyRequestFiled",
    inline_serializer(
        "PrivacyRequestFiledData",
        fields={"request_id": serializers.CharField(), "status": serializers.CharField()},
    ),
)
PRIVACY_REQUEST_DETAIL = envelope("PrivacyRequestDetail", PrivacyRequestSerializer())
PRIVACY_EXPORT = envelope(
    "PrivacyExport",
    inline_serializer(
        "PrivacyExportDocument",
        fields={
            "request_id": serializers.CharField(),
            "generated_at": serializers.DateTimeField(),
            "customers": serializers.ListField(child=serializers.DictField()),
        },
    ),
)


class PrivacyRequestCollectionView(StrictAPIView):
    @query_params(*LIST_PARAMETERS)
    @extend_schema(
        operation_id="privacy_requests_list",
        responses={
            200: list_schema("PrivacyRequestList", "privacy_requests", PrivacyRequestSerializer),
            **errors(400),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="privacy_requests",
                queryset=selectors.privacy_request_list(),
                sort_fields=selectors.PRIVACY_REQUEST_SORT_FIELDS,
                default_sort="created_at",
                to_dict=PrivacyRequestSerializer().to_representation,
            )
        )

    @extend_schema(
        operation_id="privacy_requests_create",
        description=(
            "File a privacy request (`delete`, `suppress`, `unsuppress`, `export`) for the "
            "person named by exactly one identifier; it runs in the background. An "
            "identifier that matches no one still completes (zero counts)."
        ),
        request=PrivacyRequestIn,
        responses={202: PRIVACY_REQUEST_FILED, **errors(400, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        body = validated_body(request, PrivacyRequestIn)
        ((kind, value),) = body["customer"].items()
        filed = services.privacy_request_create(
            type=body["type"], identifier_kind=kind, value=value
        )
        return Response(
            {"data": {"request_id": filed.pk, "status": filed.status}},
            status=status.HTTP_202_ACCEPTED,
        )


class PrivacyRequestDetailView(StrictAPIView):
    @extend_schema(
        operation_id="privacy_requests_retrieve",
        responses={200: PRIVACY_REQUEST_DETAIL, **errors(404)},
    )
    def get(self, request: Request, privacy_request_id: str) -> Response:
        found = selectors.privacy_request_get(request_id=privacy_request_id)
        return Response({"data": PrivacyRequestSerializer(found).data})


class PrivacyExportView(StrictAPIView):
    @extend_schema(
        operation_id="privacy_requests_export",
        description=(
            "The export document of a finished `export` request, until it expires "
            "(HERALD_PRIVACY_EXPORT_DAYS); a 404 before it is ready and after it expired."
        ),
        responses={
            200: OpenApiResponse(PRIVACY_EXPORT, description="The document, as an attachment."),
            **errors(404),
        },
    )
    def get(self, request: Request, privacy_request_id: str) -> Any:
        export = selectors.privacy_export_get(request_id=privacy_request_id, now=timezone.now())
        # Streamed a stored part at a time: a large document is never held whole.
        response = StreamingHttpResponse(
            chain([b'{"data":'], selectors.privacy_export_chunks(export=export), [b"}"]),
            content_type="application/json",
        )
        response["Content-Length"] = str(len(b'{"data":}') + export.size)
        response["Content-Disposition"] = (
            f'attachment; filename="privacy-export-{privacy_request_id}.json"'
        )
        return response
