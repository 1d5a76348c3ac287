"""Segment triggers: a workflow run per entry (or exit), exactly once, under the
workflow's conditions and re-entry policy, with the transition on the run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from automation.segments.hooks import ENTERED, Transition
from automation.segments.models import Segment, SegmentMembership
from automation.segments.services import (
    SegmentInput,
    segment_create,
    segment_update,
    segments_sweep_due,
)
from automation.webhooks.models import Delivery
from automation.webhooks.sender import deliver_one
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import workflow_run_advance
from automation.workflows.segment_triggers import segment_transitions_start
from automation.workflows.services import WorkflowInput, workflow_create
from customers.models import Customer
from customers.services import customer_update
from events_app.models import Event, EventType
from tests.automation.segments.test_exactness import _refresh_concurrently
from tests.receiver import Receiver, local_receiver

pytestmark = pytest.mark.django_db

REPEAT = {"count": {"event_type": "purchase"}, "op": "gte", "value": 2}
RECENT = {"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 1}


def on(segment: str, transition: str = "entered", **fields: Any) -> Workflow:
    fields.setdefault("name", f"on {segment} {transition}")
    fields.setdefault("actions", [{"type": "add_tags", "tags": [f"{segment}-{transition}"]}])
    return workflow_create(
        data=WorkflowInput(trigger_segments=[{"segment": segment, "on": transition}], **fields)
    )


def runs(workflow: Workflow) -> list[WorkflowRun]:
    return list(WorkflowRun.objects.filter(workflow=workflow).order_by("created_at", "id"))


def run_all_actions() -> None:
    for run_id in WorkflowRun.objects.filter(status="pending").values_list("pk", flat=True):
        workflow_run_advance(run_id=run_id)


def test_entering_runs_the_workflow_once_with_the_transition_on_the_run(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment("repeat", REPEAT)
    workflow = on("repeat")
    ingest(customer="alice")
    assert runs(workflow) == []

    ingest(customer="alice")  # enters
    ingest(customer="alice")  # stays: no transition, no run
    run_all_actions()

    (run,) = runs(workflow)
    stay = SegmentMembership.objects.get(segment=segment)
    assert run.event_id is None
    assert run.trigger == {"segment": "repeat", "on": "entered"}
    assert (run.segment_membership_id, run.segment_on) == (stay.pk, "entered")
    assert run.customer.external_id == "alice"
    assert run.status == "succeeded"
    assert Customer.objects.get(external_id="alice").tags == ["repeat-entered"]


def test_exiting_runs_only_the_exit_workflows(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    make_segment("recent", RECENT)
    entered, exited = on("recent", "entered"), on("recent", "exited")
    ingest(customer="bob")
    assert [r.trigger for r in runs(entered)] == [{"segment": "recent", "on": "entered"}]
    assert runs(exited) == []

    with time_machine.travel(timezone.now() + timedelta(days=31), tick=False):
        segments_sweep_due()
    (run,) = runs(exited)
    assert run.trigger == {"segment": "recent", "on": "exited"}
    assert run.segment_membership_id == runs(entered)[0].segment_membership_id
    assert len(runs(entered)) == 1


def test_every_entry_runs_again_and_once_per_customer_runs_once(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    make_segment("recent", RECENT)
    every, once = on("recent", name="every"), on("recent", name="once", reentry="once_per_customer")
    ingest(customer="carol")
    with time_machine.travel(timezone.now() + timedelta(days=31), tick=False):
        segments_sweep_due()  # exits
        ingest(customer="carol")  # enters again: a second stay
    assert len(runs(every)) == 2
    assert len({r.segment_membership_id for r in runs(every)}) == 2
    assert len(runs(once)) == 1


def test_the_conditions_read_the_customer_and_event_leaves_never_match(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    make_segment("repeat", REPEAT)
    country = {"customer": "attributes.country", "op": "eq", "value": "CZ"}
    czech = on("repeat", name="cz", conditions=country)
    by_event = on("repeat", name="event", conditions={"event": "data.channel", "op": "exists"})
    not_event = on(
        "repeat", name="not event", conditions={"not": {"event": "data.channel", "op": "exists"}}
    )
    in_it = on("repeat", name="member", conditions={"segment": "repeat"})
    for name in ("dana", "erik"):
        ingest(customer=name)
    customer_update(
        customer=Customer.objects.get(external_id="dana"), fields={"attributes": {"country": "CZ"}}
    )
    for name in ("dana", "erik"):
        ingest(customer=name)

    assert [r.customer.external_id for r in runs(czech)] == ["dana"]
    assert runs(by_event) == []
    assert sorted(r.customer.external_id for r in runs(not_event)) == ["dana", "erik"]
    assert sorted(r.customer.external_id for r in runs(in_it)) == ["dana", "erik"]
    leaf = runs(czech)[0].explanation["leaves"][0]
    assert (leaf["actual"], leaf["matched"]) == ("CZ", True)


def test_a_customer_change_that_enters_them_runs_the_workflow(
    make_segment: Callable[..., Segment], django_capture_on_commit_callbacks: Any
) -> None:
    make_segment("pro", {"customer": "attributes.plan", "op": "eq", "value": "pro"})
    workflow = on("pro")
    customer = Customer.objects.create(external_id="finn")
    with django_capture_on_commit_callbacks(execute=True):
        customer_update(customer=customer, fields={"attributes": {"plan": "pro"}})
    ((run),) = runs(workflow)
    assert run.trigger == {"segment": "pro", "on": "entered"}
    assert Customer.objects.get(pk=customer.pk).tags == ["pro-entered"]  # actions ran


def test_the_first_build_finds_members_without_running_triggers_a_rebuild_does(
    purchase: EventType,
    ingest: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
) -> None:
    for name in ("gus", "gus", "hal"):
        ingest(customer=name, background=False)
    with django_capture_on_commit_callbacks(execute=False) as build:
        segment = segment_create(data=SegmentInput(key="repeat", name="Repeat", condition=REPEAT))
    workflow = on("repeat")  # named while the segment is still building
    with django_capture_on_commit_callbacks(execute=True):
        for callback in build:
            callback()
    assert list(segment.memberships.values_list("customer__external_id", flat=True)) == ["gus"]
    assert runs(workflow) == []

    segment.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        segment_update(
            segment=segment,
            data=SegmentInput(condition={**REPEAT, "value": 1}),
        )
    assert [r.customer.external_id for r in runs(workflow)] == ["hal"]


def test_a_repeated_transition_makes_no_second_run(
    purchase: EventType, ingest: Callable[..., Event], make_segment: Callable[..., Segment]
) -> None:
    segment = make_segment("repeat", REPEAT)
    workflow = on("repeat")
    ingest(customer="ivy")
    ingest(customer="ivy")
    stay = SegmentMembership.objects.get(segment=segment)
    again = Transition(segment.pk, segment.key, stay.customer_id, stay.pk, ENTERED, timezone.now())
    assert segment_transitions_start([again]) == []  # the unique (workflow, stay, on) key
    assert len(runs(workflow)) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_customer_run_the_workflow_exactly_once() -> None:
    purchase = EventType.objects.create(key="purchase", name="Purchase")
    segment_create(
        data=SegmentInput(
            key="buyers",
            name="Buyers",
            condition={"count": {"event_type": "purchase"}, "op": "gte", "value": 1},
        )
    )
    workflow = on("buyers", actions=[])
    for round_ in range(5):
        customer = Customer.objects.create(external_id=f"c{round_}")
        event = Event.objects.create(
            event_type=purchase, customer=customer, occurred_at=timezone.now()
        )
        made, errors = _refresh_concurrently(event.pk, workers=4)
        assert not errors, errors
        assert sorted(made) == [0, 0, 0, 1]  # one worker made the entry
        assert WorkflowRun.objects.filter(workflow=workflow, customer=customer).count() == 1
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 5


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with local_receiver() as r:
        yield r


def test_a_webhook_action_carries_the_customer_and_the_trigger(
    purchase: EventType,
    ingest: Callable[..., Event],
    make_segment: Callable[..., Segment],
    receiver: Receiver,
) -> None:
    make_segment("repeat", REPEAT)
    workflow = on("repeat", actions=[{"type": "webhook", "url": receiver.url("/entered")}])
    ingest(customer="jan")
    ingest(customer="jan")
    run_all_actions()
    delivery = Delivery.objects.get()
    assert deliver_one(delivery.pk) == "succeeded"

    body = json.loads(receiver.requests[0].body)
    assert body["trigger"] == {"segment": "repeat", "on": "entered"}
    assert body["customer"]["external_id"] == "jan"
    assert (body["event"], body["event_type"], body["property_records"]) == (None, None, [])
    assert body["workflow"]["workflow_id"] == workflow.pk
    # No event, but about the run's customer: a privacy request or a merge finds it.
    assert delivery.event_id is None
    assert delivery.customer_id == Customer.objects.get(external_id="jan").pk
