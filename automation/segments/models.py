"""Segments: named conditions over customers, and who is in them.

A segment's membership is kept exact incrementally (automation.segments.membership):
every entry is a `SegmentMembership` row and its exit sets `exited_at`, so the rows
are the history. `SegmentCheck` holds, per (segment, customer), the next instant at
which the answer can change by time passing alone (a window running out, a
datetime coming of age): the sweep re-evaluates those that are due.
`SegmentBroadcast` is one run of a workflow's actions for every member of a segment
at a moment: the row and its cursor are the source of truth of its progress.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from customers.models import Customer
from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["Segment", "SegmentBroadcast", "SegmentCheck", "SegmentMembership"]


class Segment(models.Model):
    """A named condition over a customer (docs/automation.md, ## Segments)."""

    class Status(models.TextChoices):
        BUILDING = "building"  # the membership is being (re)computed from scratch
        READY = "ready"

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    condition = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    # Bumped when the condition changes: a build of an older version stops and
    # leaves the status to the newer one's build.
    version = models.PositiveIntegerField(default=1)
    built_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /segments sorted by created_at.
            models.Index(fields=["created_at", "id"], name="segment_created_idx"),
        ]

    def __str__(self) -> str:
        return self.key


class SegmentMembership(models.Model):
    """One stay of a customer in a segment: entered, and exited (NULL while current)."""

    # db_index=False: segmentmembership_segment_idx leads with the segment.
    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="segment_memberships", db_index=False
    )
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-entered_at", "-id"]
        constraints = [
            # At most one current stay per (segment, customer): an entry is exactly once
            # even if two workers decide it (the second insert does nothing).
            models.UniqueConstraint(
                fields=["segment", "customer"],
                condition=Q(exited_at__isnull=True),
                name="segmentmembership_one_current",
            ),
        ]
        indexes = [
            # GET /segments/{id}/members (current, by entry) and member counts.
            models.Index(
                fields=["segment", "entered_at", "id"],
                condition=Q(exited_at__isnull=True),
                name="segmentmembership_members_idx",
            ),
            # GET /customers/{id}/segments (with history) and deleting a customer.
            models.Index(fields=["customer", "segment"], name="segmentmembership_customer_idx"),
            # A broadcast's walk through the members at its moment, by customer id (past
            # stays included: a member who exits meanwhile still gets the broadcast), and
            # deleting a segment.
            models.Index(fields=["segment", "customer"], name="segmentmembership_segment_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.segment_id}/{self.customer_id}"


class SegmentCheck(models.Model):
    """When the segment's answer for a customer can next change with no new data."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    next_check_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "customer"], name="segmentcheck_unique"),
        ]
        indexes = [
            # The sweep: checks that are due, oldest first.
            models.Index(fields=["next_check_at"], name="segmentcheck_due_idx"),
            # Deleting a customer (the cascade's DELETE … WHERE customer_id IN …).
            models.Index(fields=["customer"], name="segmentcheck_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.segment_id}/{self.customer_id} @ {self.next_check_at}"


class SegmentBroadcast(models.Model):
    """A workflow's actions run once for every customer who was a member at `as_of`.

    `broadcast_key` is the client's: unique, so a repeated request finds this row
    instead of starting another. The walk goes through the members in customer id
    order; `cursor` is the last customer whose run exists (committed with the runs,
    so a crash repeats nothing and skips nothing).
    """

    class Status(models.TextChoices):
        RUNNING = "running"  # runs are being created, a batch at a time
        DONE = "done"  # every member has a run
        CANCELLED = "cancelled"  # the workflow was deactivated or deleted meanwhile

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    broadcast_key = models.CharField(max_length=128, unique=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="broadcasts")
    # A string reference: workflows import segments, not the other way round.
    workflow = models.ForeignKey(
        "automation.Workflow", on_delete=models.CASCADE, related_name="broadcasts"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # The moment whose members get the broadcast.
    as_of = models.DateTimeField()
    cursor = models.CharField(max_length=PUBLIC_ID_LENGTH, blank=True, default="")
    members_total = models.PositiveIntegerField(default=0)
    members_done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # Touched by every batch: a running broadcast untouched for the grace period lost its
    # worker, and the sweep hands it on again.
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep: running broadcasts whose worker went quiet.
            models.Index(
                fields=["updated_at"],
                condition=Q(status="running"),
                name="segmentbroadcast_running_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.broadcast_key
