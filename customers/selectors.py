"""Reads for customers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from customers.models import Customer
from events_app.models import Event
from project.cascade import cascade_blockers, cascade_rows
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


def customer_events(*, customer: Customer) -> QuerySet[Event]:
    """The customer's events; served by the (customer, created_at, id) index."""
    return Event.objects.filter(customer=customer)


@dataclass(frozen=True)
class CustomerDeletion:
    """What customer_delete would remove besides the customers, and what forbids it."""

    # Plural model name ("events", "deliveries", …) -> the rows, as an unevaluated
    # queryset: a confirmation page counts them (capped), it never lists them.
    rows: dict[str, QuerySet[Any]]
    # One line per PROTECT / RESTRICT reference that would refuse the delete.
    blockers: list[str]


def customer_deletion(*, customers: list[Customer]) -> CustomerDeletion:
    """The preview of deleting `customers`, from the same model graph the delete follows."""
    queryset = Customer.objects.filter(pk__in=[customer.pk for customer in customers])
    return CustomerDeletion(
        rows={
            str(model._meta.verbose_name_plural): rows
            for model, rows in cascade_rows(queryset).items()
            if model is not Customer
        },
        blockers=cascade_blockers(queryset),
    )
