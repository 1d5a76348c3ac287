"""Reads for customers."""

from __future__ import annotations

from django.db.models import QuerySet

from customers.models import Customer
from project.errors import NotFoundError

CUSTOMER_SORT_FIELDS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "external_id": "external_id",
    "email": "email",
    "customer_id": "pk",
}


def customer_list() -> QuerySet[Customer]:
    return Customer.objects.all()


def customer_get(*, customer_id: str) -> Customer:
    try:
        return Customer.objects.get(pk=customer_id)
    except Customer.DoesNotExist:
        raise NotFoundError(f"Customer '{customer_id}' not found.") from None
