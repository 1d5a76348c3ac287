"""The webhook sender's Celery task: one delivery per call (automation.webhooks.sender)."""

from __future__ import annotations

from celery import shared_task

from automation.webhooks.deliveries import SEND_TASK
from automation.webhooks.sender import deliver_one


@shared_task(name=SEND_TASK, acks_late=True, reject_on_worker_lost=True)
def deliver_one_task(delivery_id: str) -> str:
    """Send one delivery (automation.webhooks.sender.deliver_one)."""
    return deliver_one(delivery_id)
