"""Helpers of the set-based delete tests: table row counts and a delivery log."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models, transaction
from django.utils import timezone

from automation.delivery import delivery_create
from automation.models import Delivery, DeliveryAttempt, Endpoint
from events_app.models import Event


def row_counts(*tables: type[models.Model]) -> dict[str, int]:
    """Rows per table, by model label: what a negative assertion compares."""
    return {model._meta.label: model._base_manager.count() for model in tables}


def delivery_log(
    endpoint: Endpoint, count: int = 0, *, events: Sequence[Event] = ()
) -> list[Delivery]:
    """`count` deliveries without an event, one per event of `events`; one attempt each."""
    with transaction.atomic():
        deliveries = [delivery_create(endpoint=endpoint, payload={"n": n}) for n in range(count)]
        deliveries += [delivery_create(endpoint=endpoint, payload={}, event=e) for e in events]
    # An attempt is what the sender records; sending is not what is tested here.
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=delivery,
            number=1,
            started_at=timezone.now(),
            outcome=DeliveryAttempt.Outcome.RETRY,
        )
        for delivery in deliveries
    )
    return deliveries
