"""The segments' Celery tasks: a build, the incremental refreshes, a broadcast's batches."""

from __future__ import annotations

from celery import shared_task

from automation.segments.broadcasts import BROADCAST_TASK, broadcast_run
from automation.segments.services import (
    BUILD_TASK,
    REFRESH_CUSTOMERS_TASK,
    segment_build,
    segments_refresh_for_customers,
)


@shared_task(name=BUILD_TASK, acks_late=True, reject_on_worker_lost=True)
def segment_build_task(segment_id: str, version: int) -> int:
    """Evaluate every customer for a segment version (a lost one is restarted by the sweep)."""
    return segment_build(segment_id=segment_id, version=version)


@shared_task(name=REFRESH_CUSTOMERS_TASK, acks_late=True, reject_on_worker_lost=True)
def segments_refresh_customers_task(customer_ids: list[str], fields: list[str] | None) -> int:
    """Re-evaluate the segments reading the changed fields, for these customers."""
    return len(segments_refresh_for_customers(customer_ids=customer_ids, fields=fields))


@shared_task(name=BROADCAST_TASK, acks_late=True, reject_on_worker_lost=True)
def segment_broadcast_task(broadcast_id: str) -> int:
    """Batches of a broadcast (a lost one is handed on again by the sweep)."""
    return broadcast_run(broadcast_id=broadcast_id)
