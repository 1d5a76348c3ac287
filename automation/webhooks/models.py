"""Outbound delivery: endpoints (where Herald POSTs), deliveries (one message) and attempts.

One sender for everything that calls out: webhook subscriptions (`/webhooks`),
scheduled callbacks and workflow actions all create `Delivery` rows for an
`Endpoint` of their kind (automation.webhooks.deliveries), and automation.webhooks.sender
sends, signs, retries and logs them. The row is the source of truth for
background work: a delivery is due when `status = pending AND next_attempt_at <=
now`, whatever happened to the broker message that was meant to send it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from customers.models import Customer
from events_app.models import Event, EventType, _public_id_field

__all__ = ["RESERVED_EVENT_TYPES", "Delivery", "DeliveryAttempt", "Endpoint"]

# Keys an endpoint may list in its event_types beside event type keys: messages Herald
# sends about customers (automation.webhooks.customer_messages). Not event type keys:
# no event of such a type can be ingested.
CUSTOMER_DELETED = "customer.deleted"
RESERVED_EVENT_TYPES = frozenset({CUSTOMER_DELETED})


class Endpoint(models.Model):
    """A URL Herald delivers signed messages to, with its signing secrets and health."""

    class Kind(models.TextChoices):
        SUBSCRIPTION = "subscription"  # /webhooks: receives every matching new event
        SCHEDULE = "schedule"  # a scheduled callback's target (automation.schedules.scheduler)
        WORKFLOW = "workflow"  # a workflow action's target (automation.workflows.actions)

    id = _public_id_field()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SUBSCRIPTION)
    url = models.URLField(max_length=2048)
    description = models.TextField(blank=True, default="")
    # Empty = every event type (subscriptions only; other kinds create deliveries explicitly).
    event_types = models.ManyToManyField(EventType, blank=True, related_name="endpoints")
    # Reserved keys the endpoint listed in its event_types (RESERVED_EVENT_TYPES): messages
    # about customers rather than events, such as `customer.deleted`. An endpoint that
    # lists only reserved keys takes no events.
    # db_default: raw SQL writers of endpoints (the benchmarks) may leave it out.
    reserved_event_types = models.JSONField(default=list, blank=True, db_default=[])
    active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Standard Webhooks secret "whsec_<base64>"; kept in clear because HMAC needs it.
    secret = models.CharField(max_length=128)
    # After a rotation the old secret also signs until previous_secret_expires_at (24 h),
    # so receivers can switch without dropping messages.
    previous_secret = models.CharField(max_length=128, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Health for the 5-day auto-disable: the first failure since the last success.
    first_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Ingestion's lookup of active subscriptions (one query per stored batch).
            models.Index(
                fields=["kind"],
                condition=Q(active=True),
                name="endpoint_active_kind_idx",
            ),
            # GET /metrics: failing endpoints per kind and since when (automation.metrics).
            # Holds only endpoints failing right now.
            models.Index(
                fields=["kind", "first_failure_at"],
                condition=Q(active=True, first_failure_at__isnull=False),
                name="endpoint_failing_idx",
            ),
            # GET /metrics: disabled endpoints per kind. Holds only disabled endpoints.
            models.Index(fields=["kind"], condition=Q(active=False), name="endpoint_disabled_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.url}"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a message sent at `now`: current first, then the old one."""
        secrets = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        ):
            secrets.append(self.previous_secret)
        return secrets


class Delivery(models.Model):
    """One message to one endpoint, retried until it succeeds, fails for good or is cancelled."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = _public_id_field()
    # db_index=False: the composite indexes below lead with these columns.
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # db_constraint=False: events are partitioned on PostgreSQL, where `id` alone is
    # not a key; deletes still cascade (project.cascade), retention keeps deliveries.
    event = models.ForeignKey(
        Event,
        on_delete=models.CASCADE,
        related_name="deliveries",
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    # Whom the delivery is about: the customer of its event, or of the run that made it
    # (segment transitions, broadcasts); none for pings, schedules and `customer.deleted`.
    # Merges move it with the customer's other rows (customers.identity.moves); a privacy
    # delete finds the person's deliveries by it, redacts them and clears it.
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        null=True,
        blank=True,
        db_index=False,
    )
    # The `webhook-id` header: the same on every attempt and redelivery, so receivers
    # can drop duplicates.
    message_id = models.CharField(max_length=40, unique=True)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # Position in the retry schedule; reset by a manual redelivery.
    retry_step = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due (NULL once the delivery is final).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set when a send task was enqueued; the dispatcher leaves the row alone until then,
    # and re-enqueues it afterwards if the broker message was lost.
    queued_until = models.DateTimeField(null=True, blank=True)
    # Set by the worker that claimed the attempt (deadline + margin); a killed worker's
    # claim lapses and the dispatcher hands the row to another worker.
    locked_until = models.DateTimeField(null=True, blank=True)
    # Callers (e.g. schedules) stop retrying after this instant.
    give_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # dispatch_due_deliveries: pending rows by due time; final rows are not indexed.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due_idx",
            ),
            # Attempts in flight: the claim's per-endpoint limit and the dispatcher's count.
            # Small: only rows a worker holds (or held, until the lease lapses).
            models.Index(
                fields=["endpoint", "locked_until"],
                condition=Q(status="pending", locked_until__isnull=False),
                name="delivery_in_flight_idx",
            ),
            # deliver_one's follow-on: an endpoint's next due delivery; endpoint_disable.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_endpoint_due_idx",
            ),
            # GET /deliveries?webhook_id=… (newest first) and the admin's endpoint view.
            models.Index(fields=["endpoint", "id"], name="delivery_endpoint_idx"),
            # GET /deliveries?event_id=… and the is_delivered recomputation of one event.
            models.Index(fields=["event", "status"], name="delivery_event_idx"),
            # A customer's deliveries (GET /deliveries?customer_id=…, newest first; a
            # privacy request, a merge). Deliveries about no one are not indexed.
            models.Index(
                fields=["customer", "id"],
                condition=Q(customer__isnull=False),
                name="delivery_customer_idx",
            ),
            # GET /deliveries?status=failed (newest first).
            models.Index(fields=["status", "id"], name="delivery_status_idx"),
            # GET /metrics: deliveries finished in the last minute, per final status
            # (automation.metrics). Pending rows are not in it.
            models.Index(
                fields=["status", "completed_at"],
                condition=Q(completed_at__isnull=False),
                name="delivery_completed_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.PENDING


class DeliveryAttempt(models.Model):
    """One HTTP call of a delivery: when, how long, what came back (capped)."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        RETRY = "retry"  # failed, another attempt is scheduled
        FAILED = "failed"  # failed, no more attempts
        DISCARDED = "discarded"  # the delivery was cancelled or re-claimed meanwhile

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempts", db_index=False
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    response_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [
            # GET /deliveries/{id} and the admin inline: a delivery's attempts in order.
            models.Index(fields=["delivery", "number"], name="deliveryattempt_delivery_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.number}"
