"""Query filters for GET /customers (django-filter validates and applies them)."""

from __future__ import annotations

import django_filters

from customers.models import Customer


class CustomerFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter(field_name="external_id")
    # customers_customer_anonymous_id_key (its unique index) serves it.
    anonymous_id = django_filters.CharFilter(field_name="anonymous_id")
    # Exact match, so customer_email_idx serves it (iexact would scan the table).
    email = django_filters.CharFilter(field_name="email")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="lt")

    class Meta:
        model = Customer
        fields: list[str] = []
