from __future__ import annotations

import hashlib
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from customers.models import Customer
from events_app.partitions.ondemand import PartitionedManager, partitions_cover
from project.ids import PUBLIC_ID_LENGTH, new_public_id


def _public_id_field() -> models.CharField:
    return models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )


class EventType(models.Model):
    """A kind of event (`purchase`, `login`) and the properties it may carry."""

    id = _public_id_field()
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class PropertyDefinition(models.Model):
    """One property an event type declares: its slug, value type and whether required."""

    class ValueType(models.TextChoices):
        STRING = "string"
        NUMBER = "number"
        BOOLEAN = "boolean"
        DATETIME = "datetime"

    event_type = models.ForeignKey(EventType, on_delete=models.CASCADE, related_name="properties")
    property_id = models.SlugField(max_length=64)
    name = models.CharField(max_length=200, blank=True, default="")
    value_type = models.CharField(
        max_length=16, choices=ValueType.choices, default=ValueType.STRING
    )
    required = models.BooleanField(default=False)

    class Meta:
        ordering = ["event_type", "property_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_type", "property_id"], name="propertydef_unique_per_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type_id}:{self.property_id}"


class Event(models.Model):
    """Something a customer did, as reported by an integration.

    On PostgreSQL the table is partitioned by month of `created_at` (events_app.
    partitions): the database's primary key is (id, created_at) -- a partitioned
    table's keys must include the partition key -- while Django keeps `id` as the
    pk (ids are unique on their own: time-ordered and random). The ref's uniqueness
    lives in EventRef there; SQLite keeps one table with the unique constraint below.
    """

    class State(models.IntegerChoices):
        # The numbers are the seed-004 `state` values; documented in docs/api.md.
        PENDING = 1, "pending"
        COMPLETED = 2, "completed"
        FAILED = 3, "failed"

    id = _public_id_field()
    # db_index=False: the composite indexes below lead with these columns.
    event_type = models.ForeignKey(
        EventType, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    # The integrator's reference for the event ("ref"): unique per event type forever
    # (EventRef on PostgreSQL, the constraint below elsewhere).
    # NULL, not "", means "no ref": the partial unique index skips NULLs.
    external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    secondary_external_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    state = models.PositiveSmallIntegerField(choices=State.choices, default=State.PENDING)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # False while a webhook delivery of this event is outstanding.
    is_delivered = models.BooleanField(default=True)
    # True from ingestion until the automation engine has evaluated the event's
    # workflows; the sweeper re-enqueues rows still pending after a grace period.
    automation_pending = models.BooleanField(default=False)
    # Follow-up events emitted by workflows carry their chain depth (loop guard).
    depth = models.PositiveSmallIntegerField(default=0)
    # The API client that sent the event (the live page's filter); NULL for events
    # written otherwise (workflows, the admin, generated data). No constraint and no
    # index: events are partitioned, and the filter reads only the last few minutes.
    api_client = models.ForeignKey(
        "ApiClient",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )

    # Creates the month partition a bulk insert names, if it has none (PostgreSQL).
    objects = PartitionedManager["Event"]()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # SQLite only: PostgreSQL's partitioned table cannot hold it (it lacks the
            # partition key), EventRef holds the refs there (migration 0011 drops it).
            models.UniqueConstraint(
                fields=["event_type", "external_id"],
                condition=Q(external_id__isnull=False),
                name="event_ref_unique_per_type",
            ),
            models.CheckConstraint(
                condition=~(Q(completed_at__isnull=False) & Q(failed_at__isnull=False)),
                name="event_not_completed_and_failed",
            ),
        ]
        indexes = [
            # GET /events sorted by created_at (the default), no filter.
            models.Index(fields=["created_at", "id"], name="event_created_idx"),
            # GET /events?event_type_id=… sorted by created_at.
            models.Index(fields=["event_type", "created_at", "id"], name="event_type_created_idx"),
            # GET /events?sort_field=external_id without a type filter.
            models.Index(fields=["external_id", "id"], name="event_external_idx"),
            # GET /events?event_type_id=…&sort_field=external_id: without it PostgreSQL
            # sorts every event of the type (docs/performance.md has the figures).
            # The unique ref constraint cannot serve it: it is partial (refs only)
            # and lacks the id tie-breaker.
            models.Index(
                fields=["event_type", "external_id", "id"], name="event_type_external_idx"
            ),
            # GET /events?sort_field=occurred_at and occurred_after/occurred_before
            # ranges: without it a sort of every event.
            models.Index(fields=["occurred_at", "id"], name="event_occurred_idx"),
            # GET /customers/{id}/events and GET /events?customer_id=….
            models.Index(fields=["customer", "created_at", "id"], name="event_customer_idx"),
            # GET /events?status=pending: the work list stays small as events get processed.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(state=1),
                name="event_pending_idx",
            ),
            # The automation sweeper's scan for events whose evaluation was lost.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(automation_pending=True),
                name="event_automation_pending_idx",
            ),
            # Workflow frequency/first-time conditions: a customer's events of one
            # type within a window, or the earliest one (automation.workflows.selectors).
            models.Index(
                fields=["customer", "event_type", "occurred_at", "id"],
                name="event_customer_type_idx",
            ),
            # GET /events?status=failed and the admin's "failed" filter: failed
            # events are few, so a partial index keeps the filter off a table scan.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(state=3),
                name="event_failed_idx",
            ),
            # GET /events?is_delivered=false: only outstanding events are indexed.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(is_delivered=False),
                name="event_undelivered_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.id

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Its month's partition, if it has none yet (events_app.partitions.ondemand).
        partitions_cover([self.created_at])
        super().save(*args, **kwargs)

    @property
    def status(self) -> str:
        return self.State(self.state).label


class EventRef(models.Model):
    """A ref taken by an event of a type: what keeps refs unique per event type forever
    on PostgreSQL, where the events table is partitioned by time (a unique index on a
    partitioned table must include the partition key, so it could only say "unique
    per month").

    Written by the ingest statement itself (events_app.ingest_pg claims the ref with
    `ON CONFLICT DO NOTHING` before the event is inserted), and by triggers for every
    other writer (ORM saves, COPY): an insert whose ref is taken fails as a duplicate
    key did before. Deleting an event releases its ref (a trigger); dropping a
    partition by retention does not (docs/operations.md). Unused (empty) on SQLite.
    """

    event_type = models.ForeignKey(
        EventType, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    ref = models.CharField(max_length=255)
    # No foreign key: events are partitioned, their id alone is not a key there.
    event_id = models.CharField(max_length=PUBLIC_ID_LENGTH)

    class Meta:
        constraints = [
            # The ingest statement's ON CONFLICT target; the lookup of a ref's holder.
            models.UniqueConstraint(fields=["event_type", "ref"], name="eventref_unique_per_type")
        ]

    def __str__(self) -> str:
        return f"{self.event_type_id}:{self.ref}={self.event_id}"


class PropertyRecord(models.Model):
    """One property value of an event, stored as text as in the seed API."""

    # db_index=False: the unique (event, property_id) index serves event lookups.
    # db_constraint=False: events are partitioned on PostgreSQL, so `id` alone is not
    # a key there; the records go with their event (project.cascade, retention).
    event = models.ForeignKey(
        Event,
        on_delete=models.CASCADE,
        related_name="property_records",
        db_index=False,
        db_constraint=False,
    )
    property_id = models.CharField(max_length=64)
    property_value = models.TextField()
    # The event's created_at: the partition key on PostgreSQL (records live in the
    # month partition of their event and are dropped with it).
    created_at = models.DateTimeField()

    objects = PartitionedManager["PropertyRecord"]()

    class Meta:
        ordering = ["event", "property_id"]
        constraints = [
            # Also the index for GET /events/{id}/property-records.
            models.UniqueConstraint(
                fields=["event", "property_id"], name="propertyrecord_unique_per_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.property_id}={self.property_value}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Its month's partition, if it has none yet (events_app.partitions.ondemand).
        partitions_cover([self.created_at])
        super().save(*args, **kwargs)


class ApiClient(models.Model):
    """An integration allowed to call the API, with a hashed secret and scopes."""

    SCOPE_READ = "read"
    SCOPE_WRITE = "write"
    ALL_SCOPES = (SCOPE_READ, SCOPE_WRITE)

    name = models.CharField(max_length=100, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    secret_prefix = models.CharField(max_length=12, editable=False)
    scopes = models.CharField(max_length=100, default="read,write")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Requests per rate-limit window (project.api.ratelimit); blank = the settings
    # default (HERALD_RATE_LIMIT_INGEST / _API), 0 = unlimited for this client.
    ingest_rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="POST /events and /events/batch per window. Blank: the default; 0: unlimited.",
    )
    api_rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Every other API request per window. Blank: the default; 0: unlimited.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    # DRF treats request.user as a user object.
    is_authenticated = True
    is_anonymous = False

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.scopes.split(",") if s.strip())

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class RateLimitCounter(models.Model):
    """Requests counted in the current window of one rate limit (an API client's budget,
    an address's failed authentications): the database store of project.api.ratelimit,
    used when no Redis is configured. Written only by its one upsert."""

    key = models.CharField(max_length=200, primary_key=True)
    window_start = models.BigIntegerField()
    count = models.PositiveIntegerField()

    class Meta:
        db_table = "herald_rate_limit_counter"

    def __str__(self) -> str:
        return f"{self.key}@{self.window_start}={self.count}"


# The counters' models live in their own module (one idea: exact counts kept by the
# database); imported here so that Django registers them with this app.
from events_app.count_models import (  # noqa: E402
    EVENT_COUNT_SLOTS,
    EventCount,
    EventHourCount,
    RejectedItem,
    RejectionHourCount,
)

__all__ = [
    "EVENT_COUNT_SLOTS",
    "ApiClient",
    "Event",
    "EventCount",
    "EventHourCount",
    "EventRef",
    "EventType",
    "PropertyDefinition",
    "PropertyRecord",
    "RateLimitCounter",
    "RejectedItem",
    "RejectionHourCount",
]
