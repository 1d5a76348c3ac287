"""Query filters for GET /events (django-filter validates and applies them)."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from events_app.models import Event


class EventFilter(django_filters.FilterSet):
    event_type_id = django_filters.CharFilter(field_name="event_type_id")
    customer_id = django_filters.CharFilter(field_name="customer_id")
    external_id = django_filters.CharFilter(field_name="external_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    status = django_filters.ChoiceFilter(
        field_name="state",
        choices=[(label, label) for _, label in Event.State.choices],
        method="filter_status",
    )
    is_delivered = django_filters.BooleanFilter(field_name="is_delivered")

    class Meta:
        model = Event
        fields: list[str] = []

    def filter_status(self, queryset: QuerySet[Event], name: str, value: str) -> QuerySet[Event]:
        state = {label: number for number, label in Event.State.choices}[value]
        return queryset.filter(state=state)
