"""Broadcasts: a workflow's actions, once for every customer who is a member at a moment.

`POST /segments/{id}/broadcast {"workflow_id", "broadcast_key"}`: the workflow's
actions run for every member of the segment at the moment of the request, without
its conditions or re-entry policy. The protocol (each step safe on many workers and
after a crash):

1. `broadcast_start` inserts the broadcast row, keyed unique on `broadcast_key`
   (`INSERT … ON CONFLICT DO NOTHING`, then read it back): of any number of
   concurrent requests with one key, one inserts and starts it, the others find it
   and start nothing. `as_of` is the moment; `members_total` the members then.
2. `broadcast_advance` does one batch in one transaction: lock the row (`FOR UPDATE
   SKIP LOCKED`: one worker at a time), read the next members by customer id after
   `cursor` (a member at `as_of` is a stay entered by then and not exited by then, so
   one who exits meanwhile still gets it and one who enters later does not), insert
   one run per customer (unique (broadcast, customer)), and move `cursor` and
   `members_done` -- runs and cursor commit together, so a crash repeats nothing and
   skips nothing. After commit the runs' actions are handed on like any run's.
3. The task (`BROADCAST_TASK`) repeats 2 for a while, then hands the rest to a fresh
   task. A broadcast left `running` by a lost message or a killed worker is handed
   on again by the segments' sweep once it has been quiet for the grace period.
4. When no member is left: `done`, and `members_total` becomes the number of runs
   made (members deleted meanwhile are not counted). A workflow deactivated or
   deleted meanwhile stops it (`cancelled`).
"""

from __future__ import annotations

import time
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from automation.segments.models import Segment, SegmentBroadcast, SegmentMembership
from automation.workflows.evaluation import grace_period, run_row, runs_insert
from automation.workflows.models import Workflow
from automation.workflows.runner import runs_hand_on
from project import background
from project.audit.services import audit_record, audit_snapshot
from project.errors import ConflictError, NotFoundError, ValidationFailed

BROADCAST_TASK = "automation.segment_broadcast"
AUDIT_TYPE = "segment_broadcast"
# A task stops after this long and hands the rest to a fresh task (any worker may take
# it), so one broadcast never holds a worker through a whole large segment.
TASK_SECONDS = 10.0

Status = SegmentBroadcast.Status


def broadcast_members(broadcast: SegmentBroadcast) -> QuerySet[SegmentMembership]:
    """The stays that make a customer a member at the broadcast's moment (stays never
    overlap, so one per customer); segmentmembership_segment_idx walks them by customer."""
    return SegmentMembership.objects.filter(
        segment_id=broadcast.segment_id, entered_at__lte=broadcast.as_of
    ).filter(Q(exited_at__isnull=True) | Q(exited_at__gt=broadcast.as_of))


def broadcast_get(*, segment: Segment, broadcast_key: str) -> SegmentBroadcast:
    broadcast = SegmentBroadcast.objects.filter(
        segment=segment, broadcast_key=broadcast_key
    ).first()
    if broadcast is None:
        raise NotFoundError(
            f"Segment '{segment.key}' has no broadcast with the key '{broadcast_key}'."
        )
    return broadcast


def _same_or_conflict(
    broadcast: SegmentBroadcast, segment: Segment, workflow_id: str
) -> SegmentBroadcast:
    if broadcast.segment_id != segment.pk or broadcast.workflow_id != workflow_id:
        raise ConflictError(
            f"The broadcast_key '{broadcast.broadcast_key}' was used for another segment "
            "or workflow.",
            extra={"segment_id": broadcast.segment_id, "workflow_id": broadcast.workflow_id},
        )
    return broadcast


def broadcast_start(
    *, segment: Segment, workflow_id: str, broadcast_key: str
) -> tuple[SegmentBroadcast, bool]:
    """Start a broadcast, or find the one with this key; (broadcast, started now).

    The same key again (for the same segment and workflow) answers the existing one
    and starts nothing; for another segment or workflow it is a conflict.
    """
    existing = SegmentBroadcast.objects.filter(broadcast_key=broadcast_key).first()
    if existing is not None:
        return _same_or_conflict(existing, segment, workflow_id), False
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        raise ValidationFailed(
            f"Unknown workflow '{workflow_id}'.",
            details={"workflow_id": [f"Unknown workflow '{workflow_id}'."]},
        )
    if not workflow.active:
        raise ConflictError(f"Workflow '{workflow_id}' is inactive: activate it first.")
    if segment.status != Segment.Status.READY:
        raise ConflictError(
            f"Segment '{segment.key}' is being built: broadcast once its status is ready."
        )
    with transaction.atomic():
        candidate = SegmentBroadcast(
            broadcast_key=broadcast_key, segment=segment, workflow=workflow, as_of=timezone.now()
        )
        # ON CONFLICT DO NOTHING: a concurrent request with the key waits for the other
        # insert's commit and then inserts nothing; both read the one row back.
        SegmentBroadcast.objects.bulk_create([candidate], ignore_conflicts=True)
        broadcast = SegmentBroadcast.objects.get(broadcast_key=broadcast_key)
        if broadcast.pk != candidate.pk:
            return _same_or_conflict(broadcast, segment, workflow_id), False
        # The current stays entered by now: the same members as broadcast_members at this
        # moment, counted on the partial index of current members (index only).
        broadcast.members_total = SegmentMembership.objects.filter(
            segment=segment, exited_at__isnull=True, entered_at__lte=broadcast.as_of
        ).count()
        broadcast.save(update_fields=["members_total"])
        audit_record(
            action="created",
            obj_type=AUDIT_TYPE,
            obj_id=broadcast.pk,
            after=audit_snapshot(broadcast),
        )
        broadcast_id = broadcast.pk
        transaction.on_commit(lambda: background.enqueue(BROADCAST_TASK, broadcast_id))
    return broadcast, True


def _finish(broadcast: SegmentBroadcast, status: str, now: datetime) -> None:
    broadcast.status, broadcast.finished_at = status, now
    if status == Status.DONE:
        broadcast.members_total = broadcast.members_done
    broadcast.save(update_fields=["status", "finished_at", "members_total", "updated_at"])


def broadcast_advance(*, broadcast_id: str) -> bool:
    """One batch of the broadcast (step 2); True when there is more to do."""
    with transaction.atomic():
        broadcast = (
            SegmentBroadcast.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("segment", "workflow")
            .filter(pk=broadcast_id, status=Status.RUNNING)
            .first()
        )
        if broadcast is None:
            return False  # finished, deleted, or another worker holds it
        now = timezone.now()
        if not broadcast.workflow.active:
            _finish(broadcast, Status.CANCELLED, now)
            return False
        customer_ids = list(
            broadcast_members(broadcast)
            .filter(customer_id__gt=broadcast.cursor)
            .order_by("customer_id")
            .values_list("customer_id", flat=True)[: settings.HERALD_SEGMENT_BATCH_SIZE]
        )
        if not customer_ids:
            _finish(broadcast, Status.DONE, now)
            return False
        trigger = {"broadcast": broadcast.broadcast_key, "segment": broadcast.segment.key}
        run_ids = runs_insert(
            [
                run_row(
                    broadcast.workflow,
                    customer_id=customer_id,
                    now=now,
                    explanation={"broadcast": broadcast.broadcast_key},
                    broadcast_id=broadcast.pk,
                    trigger=trigger,
                )
                for customer_id in customer_ids
            ]
        )
        broadcast.cursor = customer_ids[-1]
        broadcast.members_done += len(customer_ids)
        broadcast.save(update_fields=["cursor", "members_done", "updated_at"])
        transaction.on_commit(lambda: runs_hand_on(run_ids))
        return True


def broadcast_run(*, broadcast_id: str) -> int:
    """The task (step 3): batches for up to TASK_SECONDS, then the rest to a fresh task;
    returns the number of batches done."""
    deadline = time.monotonic() + TASK_SECONDS
    batches = 0
    while broadcast_advance(broadcast_id=broadcast_id):
        batches += 1
        if time.monotonic() > deadline:
            background.enqueue(BROADCAST_TASK, broadcast_id)
            break
    return batches


def broadcasts_resume_stale(*, now: datetime) -> int:
    """Hand on again the running broadcasts no worker touched for the grace period
    (a lost message, a killed worker); returns how many."""
    stale = list(
        SegmentBroadcast.objects.filter(
            status=Status.RUNNING, updated_at__lt=now - grace_period()
        ).values_list("pk", flat=True)[:100]
    )
    if stale:
        SegmentBroadcast.objects.filter(pk__in=stale).update(updated_at=now)
        background.enqueue_many(BROADCAST_TASK, [(pk,) for pk in stale])
    return len(stale)
