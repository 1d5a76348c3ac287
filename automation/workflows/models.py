"""Workflows (trigger + condition tree + actions) and their runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q

from customers.models import Customer
from events_app.models import Event, EventType
from project.ids import PUBLIC_ID_LENGTH, new_public_id

__all__ = ["Workflow", "WorkflowEndpoint", "WorkflowRun"]


class Workflow(models.Model):
    """A rule: when an event of a trigger type arrives (or a customer enters or exits a
    trigger segment) and the tree matches, run the actions."""

    EVERY_EVENT = "every_event"
    ONCE_PER_CUSTOMER = "once_per_customer"
    PER_PREFIX = "once_per_customer_per:"

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    name = models.CharField(max_length=200)
    trigger_event_types = models.ManyToManyField(EventType, related_name="workflows")
    # [{"segment": key or id, "on": "entered" | "exited"}], as the client named them
    # (like a condition's segment leaf): a named segment cannot be deleted or re-keyed.
    trigger_segments = models.JSONField(default=list, blank=True)
    conditions = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    # every_event | once_per_customer | once_per_customer_per:<ISO 8601 duration>
    reentry = models.CharField(max_length=64, default=EVERY_EVENT)
    # {"event_type": key or id, "conditions": tree}: such an event ends the customer's
    # unfinished runs as converted (automation.workflows.goals); null: no goal.
    goal = models.JSONField(null=True, blank=True, default=None)
    # The delivery policy (caps, quiet hours) over its actions; PROTECT: a policy in
    # use cannot be deleted (the API's 409).
    delivery_policy = models.ForeignKey(
        "automation.DeliveryPolicy",
        on_delete=models.PROTECT,
        related_name="workflows",
        null=True,
        blank=True,
    )
    # Whether events that reach a customer through a merge (customers.identity: the
    # secondary's history moved to the primary) are evaluated for this workflow after
    # the merge; by default a merge does not fire old events again.
    trigger_on_merged_events = models.BooleanField(default=False)
    # Bumped on every change; workers compare (count, max(updated_at)) of the
    # table to know their cached copy of the active workflows is stale.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Admin / API list sorted by created_at.
            models.Index(fields=["created_at", "id"], name="workflow_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def reentry_period(self) -> timedelta | None:
        """The period of a once_per_customer_per:P… policy, else None."""
        from automation.workflows.durations import parse_duration

        if self.reentry.startswith(self.PER_PREFIX):
            return parse_duration(self.reentry.removeprefix(self.PER_PREFIX))
        return None


class WorkflowRun(models.Model):
    """One matched evaluation of a workflow, and its actions' progress.

    What started it is one of: an event (`event`), a segment transition
    (`segment_membership` and `segment_on`: the stay entered or exited), or a broadcast
    (`broadcast`); `trigger` records the latter two as the API shows them. Each has a
    unique constraint, so no retry or concurrent worker makes a second run of one.

    The row is the source of truth for background work: `position` is the
    next action to run, `resume_at` when the dispatcher may (re)start it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # matched; actions not finished, a worker is on it
        WAITING = "waiting"  # paused by a wait action until resume_at
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"  # its workflow was deactivated before the actions finished
        CONVERTED = "converted"  # the workflow's goal event arrived before the actions finished

    class Source(models.TextChoices):
        LIVE = "live"  # evaluated as its event was ingested
        BACKFILL = "backfill"  # made by a backfill over past events (simulation.backfill)

    DEACTIVATED = "Cancelled: the workflow was deactivated."

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    # db_index=False: the unique (event, workflow) constraint leads with event.
    # db_constraint=False: events are partitioned on PostgreSQL, where `id` alone is
    # not a key; deletes still cascade (project.cascade), retention keeps the runs.
    event = models.ForeignKey(
        Event,
        on_delete=models.CASCADE,
        related_name="workflow_runs",
        db_index=False,
        db_constraint=False,
        null=True,
        blank=True,
    )
    # The segment stay whose entry or exit started the run. No database constraint and
    # DO_NOTHING: the run outlives the history row (a deleted segment), and deleting
    # memberships never has to look at runs. The unique constraint below is the key.
    segment_membership = models.ForeignKey(
        "automation.SegmentMembership",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
        null=True,
        blank=True,
    )
    # "entered" or "exited"; db_default: raw SQL writers of runs may leave it out.
    segment_on = models.CharField(max_length=8, blank=True, default="", db_default="")
    # The broadcast that started the run (same reasons for DO_NOTHING).
    broadcast = models.ForeignKey(
        "automation.SegmentBroadcast",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
        null=True,
        blank=True,
    )
    # {"segment": key, "on": "entered" | "exited"} or {"broadcast": key, "segment": key};
    # null for a run an event started.
    trigger = models.JSONField(null=True, blank=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="workflow_runs", db_index=False
    )
    workflow_version = models.PositiveIntegerField(default=1)
    # The actions as they were when the run matched: a run that waits for days
    # finishes what it started even if the workflow is edited meanwhile.
    actions = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    position = models.PositiveSmallIntegerField(default=0)
    # The branch of the workflow's split action the customer landed in (0-based), set
    # when the run reaches the split; null before that or without a split.
    branch = models.PositiveSmallIntegerField(null=True, blank=True)
    # [{"index", "type", "status", "error", "at", "detail"}], one per action run so far.
    outcomes = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    explanation = models.JSONField(default=dict, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # db_default: raw SQL writers of runs may leave it out.
    source = models.CharField(
        max_length=8, choices=Source.choices, default=Source.LIVE, db_default=Source.LIVE
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A workflow is evaluated at most once per event, whatever is retried.
            models.UniqueConstraint(
                fields=["event", "workflow"], name="workflowrun_once_per_event"
            ),
            # A segment transition runs a workflow at most once, whichever worker made it.
            models.UniqueConstraint(
                fields=["workflow", "segment_membership", "segment_on"],
                condition=Q(segment_membership__isnull=False),
                name="workflowrun_once_per_transition",
            ),
            # A broadcast runs once per customer, whatever is retried or resumed.
            models.UniqueConstraint(
                fields=["broadcast", "customer"],
                condition=Q(broadcast__isnull=False),
                name="workflowrun_once_per_broadcast",
            ),
        ]
        indexes = [
            # GET /workflows/{id}/runs and the admin's run history per workflow.
            models.Index(fields=["workflow", "created_at", "id"], name="workflowrun_workflow_idx"),
            # The admin's outcome filter (failed, waiting, …) newest first by the
            # time-ordered id, and the dashboard's "failed in the last 24 hours" (an id range).
            models.Index(fields=["status", "id"], name="workflowrun_status_idx"),
            # Re-entry checks: has this customer run this workflow (since T)? Customer
            # first so that it also serves customer_delete's DELETE of a customer's
            # runs (WHERE customer_id IN …), which would otherwise read every run.
            models.Index(
                fields=["customer", "workflow", "created_at"], name="workflowrun_customer_idx"
            ),
            # The dispatcher: unfinished runs that are due (waits, and runs a
            # killed worker left behind). Finished runs leave the index.
            models.Index(
                fields=["resume_at"],
                condition=Q(status__in=["pending", "waiting"]),
                name="workflowrun_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}/{self.event_id or self.customer_id}: {self.status}"

    def cancel(self, now: datetime) -> None:
        """Stop this unfinished run for good: its workflow was deactivated."""
        self.status, self.error = self.Status.CANCELLED, self.DEACTIVATED
        self.finished_at, self.resume_at = now, None
        self.save(update_fields=["status", "error", "finished_at", "resume_at"])


class WorkflowEndpoint(models.Model):
    """A webhook endpoint a workflow owns: its webhook actions to one URL send there.

    The link lives with workflows, so the dependency points one way (workflows ->
    webhooks) and Endpoint knows nothing of its owner. Deleting the workflow removes
    the link; automation.workflows.services.workflow_delete deletes the endpoint
    itself, with its secrets and deliveries, through automation.webhooks.services.
    """

    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="endpoint_links", db_index=False
    )
    endpoint = models.OneToOneField(
        "automation.Endpoint", on_delete=models.CASCADE, related_name="workflow_link"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # A workflow's endpoints: saving its webhook actions, their secrets, and
            # stopping its deliveries on deactivate / delete.
            models.Index(fields=["workflow"], name="workflowendpoint_workflow_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} -> {self.endpoint_id}"
