"""A broadcast on a REAL Celery worker and Redis, the worker SIGKILLed mid-broadcast and
a new one started: every member gets exactly one run, and its action happens once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from automation.segments.broadcasts import broadcast_start
from automation.segments.models import Segment, SegmentBroadcast
from automation.segments.services import SegmentInput, segment_create, segments_sweep_due
from automation.workflows.models import WorkflowRun
from automation.workflows.runner import workflow_runs_dispatch_due
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from events_app.models import Event, EventType
from tests.celery_worker import celery_broker, celery_worker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MEMBERS = 300
# Small batches: the broadcast takes many transactions, so the kill lands inside it.
SMALL_BATCHES = {"HERALD_SEGMENT_BATCH_SIZE": "2"}


def unfinished() -> int:
    return (
        SegmentBroadcast.objects.filter(status="running").count()
        + WorkflowRun.objects.filter(status__in=["pending", "waiting"]).count()
        + Event.objects.filter(automation_pending=True).count()
    )


def test_a_worker_killed_mid_broadcast_leaves_each_member_exactly_one_run() -> None:
    EventType.objects.create(key="followup", name="Follow-up")
    EventType.objects.create(key="manual", name="Manual")
    Customer.objects.bulk_create(
        [Customer(external_id=f"m{i:04d}", tags=["vip"]) for i in range(MEMBERS)]
    )
    Customer.objects.create(external_id="outsider")
    # Built at once (no broker yet: in this process).
    segment_create(
        data=SegmentInput(
            key="vip", name="VIP", condition={"customer": "tags", "op": "contains", "value": "vip"}
        )
    )
    segment = Segment.objects.get(key="vip")
    assert segment.status == "ready"
    workflow = workflow_create(
        data=WorkflowInput(
            name="Spring letter",
            trigger_event_types=["manual"],
            # Each action performed leaves an event: a second performance would show.
            actions=[{"type": "emit_event", "event_type": "followup"}],
        )
    )

    with celery_broker() as broker:
        with celery_worker(broker, pool="solo", env=SMALL_BATCHES) as worker:
            broadcast, started = broadcast_start(
                segment=segment, workflow_id=workflow.pk, broadcast_key="spring"
            )
            assert started
            assert broadcast.members_total == MEMBERS
            wait_until(
                lambda: SegmentBroadcast.objects.get().members_done >= 20,
                timeout=60,
                what="the first batches",
            )
            worker.kill()
        at_kill = SegmentBroadcast.objects.get()
        assert at_kill.members_done < MEMBERS, "finished before the kill: nothing was tested"

        # A new worker; the sweep (run here with a clock past the grace period) hands the
        # broadcast on again, the dispatcher the runs the dead worker held.
        with celery_worker(broker, pool="solo", env=SMALL_BATCHES):
            later = timezone.now() + timedelta(hours=1)
            for _ in range(200):  # bounded
                segments_sweep_due(now=later)
                workflow_runs_dispatch_due(now=later)
                try:
                    wait_until(lambda: unfinished() == 0, timeout=3, what="all work done")
                    break
                except AssertionError:
                    continue
            assert unfinished() == 0

    done = SegmentBroadcast.objects.get()
    assert (done.status, done.members_total, done.members_done) == ("done", MEMBERS, MEMBERS)
    runs = Counter(WorkflowRun.objects.values_list("customer__external_id", flat=True))
    assert runs == {f"m{i:04d}": 1 for i in range(MEMBERS)}
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"succeeded"}
    followups = Counter(
        Event.objects.filter(event_type__key="followup").values_list(
            "customer__external_id", flat=True
        )
    )
    assert followups == {f"m{i:04d}": 1 for i in range(MEMBERS)}
