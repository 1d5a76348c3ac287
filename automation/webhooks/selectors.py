"""Reads of outbound delivery for the API and the admin: webhooks and deliveries."""

from __future__ import annotations

from django.db.models import QuerySet

from automation.webhooks.models import Delivery, Endpoint
from project.errors import NotFoundError


def webhook_list() -> QuerySet[Endpoint]:
    """Webhook subscriptions only: endpoints of schedules and workflows are managed there."""
    return Endpoint.objects.filter(kind=Endpoint.Kind.SUBSCRIPTION).prefetch_related("event_types")


def webhook_get(*, webhook_id: str) -> Endpoint:
    try:
        return webhook_list().get(pk=webhook_id)
    except Endpoint.DoesNotExist:
        raise NotFoundError(f"Webhook '{webhook_id}' not found.") from None


def delivery_list(
    *,
    webhook_id: str | None = None,
    event_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
) -> QuerySet[Delivery]:
    queryset = Delivery.objects.all()
    if webhook_id is not None:
        queryset = queryset.filter(endpoint_id=webhook_id)
    if event_id is not None:
        queryset = queryset.filter(event_id=event_id)
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset


def delivery_get(*, delivery_id: str, with_attempts: bool = False) -> Delivery:
    queryset = Delivery.objects.all()
    if with_attempts:
        queryset = queryset.prefetch_related("attempts")
    try:
        return queryset.get(pk=delivery_id)
    except Delivery.DoesNotExist:
        raise NotFoundError(f"Delivery '{delivery_id}' not found.") from None
