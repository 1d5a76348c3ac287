"""The exact counters kept by the database, by type and by hour, and the bounded store
of rejected batch items (events_app.activity): models of events_app, registered through
events_app.models."""

from __future__ import annotations

from django.db import models

# Concurrent writers add into different slots of a type's counter (the
# triggers pick pg_backend_pid() % EVENT_COUNT_SLOTS), so ingestion from many
# connections does not queue on one hot row. Changing it needs a migration
# that recreates the trigger functions (events_app/migrations/0003_*).
EVENT_COUNT_SLOTS = 32


class EventCount(models.Model):
    """How many events an event type has: GET /events' exact `total_items` without COUNT(*).

    Maintained only by PostgreSQL triggers on the event table (statement-level
    AFTER INSERT / DELETE with transition tables, a row-level AFTER UPDATE when
    the type changes, AFTER TRUNCATE), so every write path — ORM saves,
    bulk_create, COPY, raw SQL, cascaded customer deletes — keeps it exact in
    the writer's own transaction. A type's count is the sum of its slots.
    Never written by application code; `events` unused on SQLite.

    `ingested` counts every event ever stored and is never decremented (deletes,
    retention and type changes leave it alone): the monotonic source of
    `herald_events_ingested_total`. On SQLite a row trigger keeps it (migration
    0017). The rows of a deleted event type stay (no database constraint, nothing
    cascades), so the total never goes down. A figure added per type and slot is
    another column here, written by the same trigger functions.
    """

    event_type = models.ForeignKey(
        "events_app.EventType",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    slot = models.PositiveSmallIntegerField()
    events = models.BigIntegerField(default=0)
    ingested = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            # The triggers' ON CONFLICT target; also serves the per-type sum.
            models.UniqueConstraint(fields=["event_type", "slot"], name="eventcount_type_slot")
        ]

    def __str__(self) -> str:
        return f"{self.event_type_id}[{self.slot}]={self.events}"


class EventHourCount(models.Model):
    """How many events of a type were created in one hour (UTC): the dashboard's trends.

    The same mechanism as EventCount, by the hour: the same trigger functions add
    each write's events per (hour, type) into this connection's slot, so every write
    path keeps it exact; retention subtracts the months it drops
    (events_app.partitions.maintenance), and a periodic job folds the slots of past
    hours into slot 0 (events_app.activity). Unused (and empty) on SQLite, where the
    dashboard groups the events themselves.
    """

    hour = models.DateTimeField()
    # No constraint, nothing cascades: deleting a type deletes its events first, and
    # the triggers bring its hours to zero (the fold job removes them).
    event_type = models.ForeignKey(
        "events_app.EventType",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    slot = models.PositiveSmallIntegerField()
    events = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The triggers' ON CONFLICT target; leading with the hour, it also serves
            # the dashboard's range of hours.
            models.UniqueConstraint(
                fields=["hour", "event_type", "slot"], name="eventhourcount_hour_type_slot"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%dT%H} {self.event_type_id}[{self.slot}]={self.events}"


class RejectedItem(models.Model):
    """A batch item the API refused, with its error: what the live page shows.

    A bounded store: recording a batch's rejections prunes its API client's older
    ones beyond events_app.activity.REJECTIONS_KEPT in the same statement.
    """

    api_client = models.ForeignKey("ApiClient", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    position = models.PositiveIntegerField()  # the item's index in its batch
    # As sent (the type's key or id), "" when the item had none or was unreadable.
    event_type = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField()
    # The item as sent, cut to events_app.activity.SENT_KEPT characters.
    sent = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            # The live page's poll (newest after a cursor) and the prune per client.
            models.Index(fields=["api_client", "id"], name="rejecteditem_client_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.api_client_id}#{self.position}: {self.error}"


class RejectionHourCount(models.Model):
    """How many batch items an API client had rejected in one hour (UTC): the
    dashboard's rejection trend, kept by the statement that records them."""

    hour = models.DateTimeField()
    api_client = models.ForeignKey(
        "ApiClient", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    items = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "api_client"], name="rejectionhourcount_hour_client"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%dT%H} {self.api_client_id}={self.items}"
