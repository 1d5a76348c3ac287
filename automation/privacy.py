"""What automation holds about a person, for privacy requests (customers.privacy).

customers never imports automation: these are the hooks automation registers in
customers.hooks (AutomationConfig.ready()):

- erase, before customer_delete's cascade: the customer's webhook deliveries (those
  about them: Delivery.customer) stay as rows (the delivery counts, the dashboard's
  hourly figures and the endpoints' health stay true) but lose their payload and their
  links to the person and to the deleted events; pending ones are cancelled, so
  nothing about the person is sent after the delete. Their runs,
  waiting ones included, and segment stays go with the cascade.
- deleted, after it: the `customer.deleted` message to every subscription that lists
  that reserved key, through the one sender (automation.webhooks).
- export: the customer's workflow runs, segment stays and deliveries (with payloads);
  datetimes are left to the document's JSON encoder.

Every statement is set-based: a customer with a million events costs the same number
of statements as one with none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from automation.segments.models import SegmentMembership
from automation.webhooks.deliveries import delivery_create
from automation.webhooks.models import CUSTOMER_DELETED, Delivery, DeliveryAttempt, Endpoint
from automation.workflows.models import WorkflowRun

# What a redacted delivery's payload becomes.
REDACTED_PAYLOAD = {"redacted": "The customer was deleted (privacy request)."}
CANCELLED_REASON = "Cancelled: the customer was deleted."


def customer_deliveries(customer_ids: list[str]) -> QuerySet[Delivery]:
    """The customers' deliveries: those about them (Delivery.customer, read through
    delivery_customer_idx), made for their events or by their runs."""
    return Delivery.objects.filter(customer_id__in=customer_ids)


def customer_deliveries_redact(customer_ids: list[str]) -> dict[str, int]:
    """The erase hook: cancel the customers' pending deliveries, blank every payload
    and response excerpt, and detach the rows from the customers and the events about
    to be deleted. UPDATEs whose WHERE is a subquery: no delivery is read into memory.
    On PostgreSQL one statement (_redact_pg); elsewhere the detaching UPDATE comes last
    (the others find the deliveries by their customer)."""
    deliveries = customer_deliveries(customer_ids)
    now = timezone.now()
    if connection.vendor == "postgresql":
        redacted, cancelled = _redact_pg(deliveries, now)
        return {"deliveries_redacted": redacted, "deliveries_cancelled": cancelled}
    DeliveryAttempt.objects.filter(delivery__in=deliveries.values("pk")).exclude(
        response_excerpt=""
    ).update(response_excerpt="")
    cancelled = deliveries.filter(status=Delivery.Status.PENDING).update(
        status=Delivery.Status.CANCELLED,
        next_attempt_at=None,
        completed_at=now,
        last_error=CANCELLED_REASON,
    )
    redacted = deliveries.update(payload=REDACTED_PAYLOAD, event=None, customer=None)
    return {"deliveries_redacted": redacted, "deliveries_cancelled": cancelled}


def _redact_pg(deliveries: QuerySet[Delivery], now: datetime) -> tuple[int, int]:
    """The three writes of the redaction as one statement: the deliveries are found once
    (through delivery_customer_idx) into a materialized CTE that the attempts' UPDATE and
    the deliveries' UPDATE both read. A delivery is cancelled if it is pending when
    updated (the row as it is then, not as found). Returns (redacted, cancelled)."""
    found, params = deliveries.values("pk", "status").query.sql_with_params()
    pending, cancelled = Delivery.Status.PENDING, Delivery.Status.CANCELLED
    table, attempts = Delivery._meta.db_table, DeliveryAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH target (id, status) AS MATERIALIZED ({found}), "  # noqa: S608
            f"blanked AS (UPDATE {attempts} a SET response_excerpt = '' FROM target t "
            "WHERE a.delivery_id = t.id AND a.response_excerpt <> '' RETURNING 1), "
            f"redacted AS (UPDATE {table} d SET payload = %s, event_id = NULL, "
            "customer_id = NULL, "
            "status = CASE WHEN d.status = %s THEN %s ELSE d.status END, "
            "next_attempt_at = CASE WHEN d.status = %s THEN NULL ELSE d.next_attempt_at END, "
            "completed_at = CASE WHEN d.status = %s THEN %s ELSE d.completed_at END, "
            "last_error = CASE WHEN d.status = %s THEN %s ELSE d.last_error END "
            "FROM target t WHERE d.id = t.id "
            "RETURNING t.status = %s AND d.status = %s AS cancelled) "
            "SELECT count(*), count(*) FILTER (WHERE cancelled) FROM redacted",
            [
                *params,
                json.dumps(REDACTED_PAYLOAD),
                pending,
                cancelled,
                pending,
                pending,
                now,
                pending,
                CANCELLED_REASON,
                pending,
                cancelled,
            ],
        )
        redacted_count, cancelled_count = cursor.fetchone()
    return int(redacted_count), int(cancelled_count)


def customer_deliveries_kept(customer_ids: list[str]) -> dict[str, list[QuerySet[Any]]]:
    """The kept hook: the delivery rows (and their attempts) that deleting the customers
    keeps, redacted by customer_deliveries_redact, for a delete confirmation to count."""
    deliveries = customer_deliveries(customer_ids)
    return {
        "deliveries kept as redacted rows (payloads blanked, pending ones cancelled)": [deliveries],
        "delivery attempts kept (response excerpts blanked)": [
            DeliveryAttempt.objects.filter(delivery__in=deliveries.values("pk"))
        ],
    }


def customer_deleted_notify(customer_id: str, external_id: str | None) -> None:
    """The deleted hook: a signed `customer.deleted` delivery to every active subscription
    listing that key, created in the deleting transaction and sent after it commits."""
    endpoints = Endpoint.objects.filter(kind=Endpoint.Kind.SUBSCRIPTION, active=True)
    payload = {
        "type": CUSTOMER_DELETED,
        "data": {"customer_id": customer_id, "external_id": external_id},
    }
    for endpoint in endpoints:
        if CUSTOMER_DELETED in (endpoint.reserved_event_types or []):
            delivery_create(endpoint=endpoint, payload=payload)


def _runs_export(customer_id: str) -> Iterator[dict[str, Any]]:
    runs = WorkflowRun.objects.filter(customer_id=customer_id).order_by("created_at", "id")
    for run in runs.iterator(chunk_size=2000):
        yield {
            "run_id": run.id,
            "workflow_id": run.workflow_id,
            "event_id": run.event_id,
            "trigger": run.trigger,
            "status": run.status,
            "outcomes": run.outcomes,
            "error": run.error,
            "created_at": run.created_at,
            "finished_at": run.finished_at,
        }


def _memberships_export(customer_id: str) -> Iterator[dict[str, Any]]:
    stays = (
        SegmentMembership.objects.filter(customer_id=customer_id)
        .select_related("segment")
        .order_by("entered_at", "id")
    )
    for stay in stays.iterator(chunk_size=2000):
        yield {
            "segment_id": stay.segment_id,
            "segment_key": stay.segment.key,
            "entered_at": stay.entered_at,
            "exited_at": stay.exited_at,
        }


def _deliveries_export(customer_id: str) -> Iterator[dict[str, Any]]:
    deliveries = customer_deliveries([customer_id]).order_by("created_at", "id")
    for d in deliveries.iterator(chunk_size=2000):
        yield {
            "delivery_id": d.id,
            "webhook_id": d.endpoint_id,
            "event_id": d.event_id,
            "status": d.status,
            "created_at": d.created_at,
            "payload": d.payload,
        }


def privacy_hooks_register() -> None:
    """Register automation's hooks in customers.hooks (AutomationConfig.ready())."""
    from customers.hooks import (
        customer_deleted_hook_register,
        customer_erase_hook_register,
        customer_export_hook_register,
        customer_kept_hook_register,
    )

    customer_erase_hook_register("deliveries", customer_deliveries_redact)
    customer_kept_hook_register("deliveries", customer_deliveries_kept)
    customer_deleted_hook_register("webhooks", customer_deleted_notify)
    customer_export_hook_register("workflow_runs", _runs_export)
    customer_export_hook_register("segment_memberships", _memberships_export)
    customer_export_hook_register("deliveries", _deliveries_export)
