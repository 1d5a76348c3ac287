"""Query filters for GET /customers/merges."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from customers.identity.models import CustomerMerge


class MergeFilter(django_filters.FilterSet):
    customer_id = django_filters.CharFilter(
        method="_customer", help_text="Merges this customer took part in (either side)."
    )
    status = django_filters.ChoiceFilter(choices=CustomerMerge.Status.choices)

    class Meta:
        model = CustomerMerge
        fields: list[str] = []

    def _customer(
        self, queryset: QuerySet[CustomerMerge], name: str, value: str
    ) -> QuerySet[CustomerMerge]:
        return queryset.filter(Q(primary_id=value) | Q(secondary_id=value))
