"""The privacy requests' Celery task: one request per call (customers.privacy.services)."""

from __future__ import annotations

from celery import shared_task

from customers.privacy.services import RUN_TASK, privacy_request_run


@shared_task(name=RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def privacy_request_run_task(request_id: str) -> bool:
    """Run one privacy request if it is still due (a lost one is handed on by the sweep)."""
    return privacy_request_run(request_id=request_id)
