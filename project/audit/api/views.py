"""GET /audit-log: the audit trail, newest first, filtered by actor, object and time."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from project.api.listing import filtered_list
from project.api.schema import LIST_PARAMETERS, errors, filter_parameters
from project.api.schema import list_envelope as list_schema
from project.api.strict import StrictAPIView, query_params
from project.audit import selectors
from project.audit.models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "before",
            "after",
            "request_id",
        ]

    def get_actor(self, entry: AuditEntry) -> dict[str, str]:
        return {"kind": entry.actor_kind, "id": entry.actor_id, "name": entry.actor_name}


class AuditEntryFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        method="filter_actor", help_text="An API client's or admin user's id or name."
    )
    object_type = django_filters.CharFilter(field_name="object_type")
    object_id = django_filters.CharFilter(field_name="object_id")
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEntry
        fields: list[str] = []

    def filter_actor(
        self, queryset: QuerySet[AuditEntry], name: str, value: str
    ) -> QuerySet[AuditEntry]:
        return queryset.filter(Q(actor_id=value) | Q(actor_name=value))


class AuditLogView(StrictAPIView):
    @query_params(*LIST_PARAMETERS, *filter_parameters(AuditEntryFilter))
    @extend_schema(
        operation_id="audit_log_list",
        description=(
            "Every configuration change and every secret shown, newest first: who (API "
            "client or admin user), what (action, object type and id), when, and the "
            "object's state before and after. Secrets are never recorded."
        ),
        responses={200: list_schema("AuditLog", "audit_log", AuditEntrySerializer), **errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            filtered_list(
                request.query_params,
                key="audit_log",
                queryset=selectors.audit_entries(),
                filterset_class=AuditEntryFilter,
                sort_fields=selectors.AUDIT_SORT_FIELDS,
                default_sort="at",
                to_dict=AuditEntrySerializer().to_representation,
            )
        )
