"""One event that cannot be evaluated never fails its batch: it gets a failed run saying
why, is not tried again, and the other events of the batch are evaluated."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from automation.due import due_events_process
from automation.workflows import evaluation
from automation.workflows.models import Workflow, WorkflowRun
from events_app.models import Event

pytestmark = pytest.mark.django_db

OUT_OF_RANGE = (
    "Not evaluated: its occurred_at or created_at lies outside the years 1-9999 in UTC "
    "(stored before datetimes were validated), so its conditions cannot be judged."
)


def poison(event: Event, stored: str = "0001-01-01T00:00:00+01:00") -> None:
    """Store an instant Python cannot hold, as a row written before validation could."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_app_event SET occurred_at = %s::timestamptz WHERE id = %s",
            [stored, event.pk],
        )


def runs() -> dict[str, tuple[str, str]]:
    """Customer external id -> (status, error) of their event's run."""
    return {
        r.event.customer.external_id: (r.status, r.error)
        for r in WorkflowRun.objects.select_related("event__customer")
    }


@pytest.mark.parametrize("stored", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_event_with_an_instant_python_cannot_hold_fails_alone(
    make_workflow: Any, ingest: Any, purchase: Any, stored: str
) -> None:
    make_workflow(conditions={})
    events = [ingest(customer=name) for name in ("alice", "bob", "carol")]
    poison(events[1], stored)

    created = due_events_process(event_ids=[e.pk for e in events]).run_ids

    assert created == []  # no actions: matched runs are finished at once
    assert runs() == {
        "alice": ("succeeded", ""),
        "bob": ("failed", OUT_OF_RANGE),
        "carol": ("succeeded", ""),
    }
    bad = WorkflowRun.objects.get(event=events[1])
    assert bad.explanation == {"evaluation_error": OUT_OF_RANGE.removeprefix("Not evaluated: ")}
    assert (bad.actions, bad.position, bad.outcomes, bad.resume_at) == ([], 0, [], None)
    assert list(Event.objects.filter(automation_pending=True)) == []


def test_the_failed_event_is_not_claimed_or_swept_again(
    make_workflow: Any, ingest: Any, purchase: Any
) -> None:
    make_workflow(conditions={})
    events = [ingest(customer=name) for name in ("alice", "bob")]
    poison(events[0])
    due_events_process(event_ids=[e.pk for e in events])
    before = WorkflowRun.objects.count()

    again = due_events_process(event_ids=[e.pk for e in events]).run_ids

    assert again == []
    assert WorkflowRun.objects.count() == before == 2
    assert not Event.objects.filter(automation_pending=True).exists()
    assert due_events_process().claimed == 0


def test_a_condition_that_crashes_on_one_event_fails_that_event_only(
    make_workflow: Any, ingest: Any, purchase: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = make_workflow(conditions={})
    other = make_workflow(name="Other", conditions={})
    events = [ingest(customer=name) for name in ("alice", "bob", "carol")]
    real = evaluation.matches

    def crash_on_bob(compiled: Any, context: Any) -> bool:
        if context.customer["external_id"] == "bob" and compiled.workflow_id == workflow.pk:
            raise RuntimeError("boom")
        return real(compiled, context)

    monkeypatch.setattr(evaluation, "matches", crash_on_bob)

    due_events_process(event_ids=[e.pk for e in events])

    outcome = {
        (r.workflow_id, r.event.customer.external_id): (r.status, r.error)
        for r in WorkflowRun.objects.select_related("event__customer")
    }
    crashed = "Not evaluated: evaluating it failed (RuntimeError: boom)."
    assert outcome == {
        (workflow.pk, "alice"): ("succeeded", ""),
        (workflow.pk, "bob"): ("failed", crashed),
        (workflow.pk, "carol"): ("succeeded", ""),
        (other.pk, "alice"): ("succeeded", ""),
        (other.pk, "bob"): ("succeeded", ""),
        (other.pk, "carol"): ("succeeded", ""),
    }


def test_facts_that_crash_on_one_event_are_read_one_event_at_a_time(
    make_workflow: Any, ingest: Any, purchase: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_workflow(conditions={})
    events = [ingest(customer=name) for name in ("alice", "bob", "carol")]
    real = evaluation.batch_contexts

    def crash_with_bob(*, events: Any, **kwargs: Any) -> Any:
        if any(e.customer_id == bob for e in events):
            raise ValueError("bad facts")
        return real(events=events, **kwargs)

    bob = events[1].customer_id
    monkeypatch.setattr(evaluation, "batch_contexts", crash_with_bob)

    due_events_process(event_ids=[e.pk for e in events])

    assert runs() == {
        "alice": ("succeeded", ""),
        "bob": ("failed", "Not evaluated: evaluating it failed (ValueError: bad facts)."),
        "carol": ("succeeded", ""),
    }


def test_a_run_not_evaluated_does_not_count_for_once_per_customer(
    make_workflow: Any, ingest: Any, purchase: Any
) -> None:
    make_workflow(conditions={}, reentry=Workflow.ONCE_PER_CUSTOMER)
    first = ingest(customer="alice")
    poison(first)
    due_events_process(event_ids=[first.pk])
    second = ingest(customer="alice")

    due_events_process(event_ids=[second.pk])

    statuses = dict(WorkflowRun.objects.values_list("event_id", "status"))
    assert statuses == {first.pk: "failed", second.pk: "succeeded"}
