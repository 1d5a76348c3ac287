"""Evaluation on real services and PostgreSQL: runs, re-entry, frequency windows, the
pending flag, the sweeper and the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automation.due import due_events_process, due_events_process_and_run
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import workflow_runs_due
from automation.workflows.services import WorkflowInput, workflow_set_active, workflow_update
from events_app.models import Event
from project.background import run_job

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BIG = {"property": "amount", "op": "gte", "value": 100}

pytestmark = pytest.mark.django_db


def run_pairs() -> list[tuple[str, str]]:
    return sorted(WorkflowRun.objects.values_list("workflow__name", "event__external_id"))


def test_ingest_flags_only_events_that_an_active_workflow_triggers_on(
    purchase: Any, login: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(trigger_event_types=["purchase"])
    bought = ingest("purchase", records={"amount": 5})
    logged_in = ingest("login")
    assert Event.objects.get(pk=bought.pk).automation_pending is True
    assert Event.objects.get(pk=logged_in.pk).automation_pending is False


def test_ingest_writes_the_flag_with_the_insert_and_updates_no_event_row(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(trigger_event_types=["purchase"])
    with CaptureQueriesContext(connection) as queries:
        bought = ingest("purchase", records={"amount": 5})
    assert Event.objects.get(pk=bought.pk).automation_pending is True
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "events_app_event"')]
    assert updates == []


def test_matching_event_leaves_one_run_with_its_explanation_and_clears_the_flag(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(conditions=BIG, actions=[{"type": "add_tags", "tags": ["big"]}])
    big = ingest(records={"amount": "250"})
    small = ingest(records={"amount": "20"})

    run_ids = due_events_process(event_ids=[big.pk, small.pk]).run_ids

    run = WorkflowRun.objects.get()
    assert run_ids == [run.pk]
    assert (run.workflow_id, run.event_id, run.customer_id) == (
        workflow.pk,
        big.pk,
        big.customer_id,
    )
    assert run.status == "pending"
    assert run.explanation == {
        "matched": True,
        "leaves": [
            {
                "path": "conditions",
                "property": "amount",
                "op": "gte",
                "expected": 100,
                "actual": 250,
                "missing": False,
                "matched": True,
            }
        ],
    }
    assert Event.objects.filter(automation_pending=True).count() == 0


def test_workflow_without_actions_records_a_finished_run(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(conditions=BIG)
    event = ingest(records={"amount": "250"})
    with time_machine.travel(T0, tick=False):
        assert due_events_process(event_ids=[event.pk]).run_ids == []  # nothing left to run
    run = WorkflowRun.objects.get()
    assert (run.status, run.finished_at, run.resume_at, run.outcomes) == ("succeeded", T0, None, [])


def test_evaluating_the_same_events_again_creates_nothing(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(conditions=BIG)
    event = ingest(records={"amount": "250"})
    due_events_process_and_run(event_ids=[event.pk])
    # A retried task, a re-sent broker message, the sweeper: nothing new.
    Event.objects.filter(pk=event.pk).update(automation_pending=True)
    assert due_events_process(event_ids=[event.pk]).run_ids == []
    assert WorkflowRun.objects.count() == 1


def test_only_workflows_triggered_by_the_event_type_are_evaluated(
    purchase: Any, login: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(name="on purchase", trigger_event_types=["purchase"])
    make_workflow(name="on login", trigger_event_types=[login.pk])  # by id works too
    bought = ingest("purchase")
    due_events_process(event_ids=[bought.pk])
    assert run_pairs() == [("on purchase", None)]


def test_inactive_workflow_does_not_fire_and_reactivation_is_seen_at_once(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(active=False)
    first = ingest()
    assert Event.objects.get(pk=first.pk).automation_pending is False
    workflow_set_active(workflow=workflow, active=True)
    second = ingest()
    due_events_process(event_ids=[first.pk, second.pk])
    assert list(WorkflowRun.objects.values_list("event_id", flat=True)) == [second.pk]


def test_workflow_edit_is_picked_up_by_the_cached_engine(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(conditions=BIG)
    due_events_process(event_ids=[ingest(records={"amount": "50"}).pk])
    workflow_update(
        workflow=workflow,
        data=WorkflowInput(conditions={"property": "amount", "op": "lt", "value": 100}),
    )
    due_events_process(event_ids=[ingest(records={"amount": "50"}).pk])
    assert WorkflowRun.objects.count() == 1
    assert WorkflowRun.objects.get().workflow_version == 2


# ---------------------------------------------------------------- re-entry


@pytest.mark.parametrize(
    ("reentry", "expected_runs"),
    [("every_event", 3), ("once_per_customer", 1), ("once_per_customer_per:P7D", 2)],
)
def test_reentry_policy_limits_runs_per_customer(
    reentry: str,
    expected_runs: int,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    make_workflow(reentry=reentry)
    with time_machine.travel(T0, tick=False):
        due_events_process(event_ids=[ingest().pk, ingest().pk])  # same batch, same customer
    with time_machine.travel(T0 + timedelta(days=7, seconds=1), tick=False):
        due_events_process(event_ids=[ingest().pk])
    assert WorkflowRun.objects.count() == expected_runs


def test_reentry_is_per_customer(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(reentry="once_per_customer")
    due_events_process(event_ids=[ingest(customer="alice").pk, ingest(customer="bob").pk])
    due_events_process(event_ids=[ingest(customer="alice").pk])
    assert WorkflowRun.objects.count() == 2


def test_reentry_period_edge_is_exclusive(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(reentry="once_per_customer_per:P1D")
    with time_machine.travel(T0, tick=False):
        due_events_process(event_ids=[ingest().pk])
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        due_events_process(event_ids=[ingest().pk])  # exactly one period later: allowed again
    with time_machine.travel(T0 + timedelta(days=1, hours=23), tick=False):
        due_events_process(event_ids=[ingest().pk])  # within the period of the second run
    assert WorkflowRun.objects.count() == 2


# ---------------------------------------------------------------- frequency and first


def test_count_window_includes_events_just_inside_and_excludes_just_outside(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        name="third in a week",
        conditions={"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 3},
    )
    with time_machine.travel(T0, tick=False):
        ingest(occurred_at=T0 - timedelta(days=7))  # exactly 7 days ago: outside (now - W, now]
        ingest(occurred_at=T0 - timedelta(days=7) + timedelta(seconds=1))  # just inside
        third = ingest(occurred_at=T0)
        Event.objects.update(automation_pending=False)
        Event.objects.filter(pk=third.pk).update(automation_pending=True)
        due_events_process(event_ids=[third.pk])
    assert WorkflowRun.objects.count() == 0  # only 2 inside the window
    with time_machine.travel(T0, tick=False):
        fourth = ingest(occurred_at=T0 - timedelta(hours=1))
        due_events_process(event_ids=[fourth.pk])
    run = WorkflowRun.objects.get()
    assert run.event_id == fourth.pk
    assert run.explanation["leaves"][0]["actual"] == 3


def test_count_at_most_n_and_other_customers_do_not_count(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(
        conditions={"count": {"event_type": "purchase", "within": "PT1H"}, "op": "lte", "value": 1}
    )
    with time_machine.travel(T0, tick=False):
        for _ in range(3):
            ingest(customer="bob", occurred_at=T0 - timedelta(minutes=5))
        Event.objects.update(automation_pending=False)
        alice_first = ingest(customer="alice", occurred_at=T0)
        due_events_process(event_ids=[alice_first.pk])
        alice_second = ingest(customer="alice", occurred_at=T0)
        due_events_process(event_ids=[alice_second.pk])
    assert list(WorkflowRun.objects.values_list("event_id", flat=True)) == [alice_first.pk]


def test_first_event_of_type_matches_once_per_customer(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(name="first purchase", conditions={"first": "purchase"})
    first = ingest(customer="alice", occurred_at=T0)
    second = ingest(customer="alice", occurred_at=T0 + timedelta(minutes=1))
    bob = ingest(customer="bob", occurred_at=T0 + timedelta(minutes=2))
    due_events_process(event_ids=[first.pk, second.pk, bob.pk])  # one batch
    assert sorted(WorkflowRun.objects.values_list("event_id", flat=True)) == sorted(
        [first.pk, bob.pk]
    )


def test_one_query_per_frequency_condition_per_batch(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    django_assert_max_num_queries: Any,
) -> None:
    # Two workflows sharing one count condition, one with a first condition.
    count = {"count": {"event_type": "purchase", "within": "P1D"}, "op": "gte", "value": 1}
    make_workflow(name="a", conditions=count)
    make_workflow(name="b", conditions={"all": [count, {"first": "purchase"}]})
    ids = [ingest(customer=f"c{i}").pk for i in range(30)]
    due_events_process(event_ids=ids[:1])  # warm the cache
    # stamp, lock events, type keys, declared types, records, customers,
    # 1 count + 1 first query, insert runs, clear flags, savepoints.
    with django_assert_max_num_queries(14):
        due_events_process(event_ids=ids[1:])
    assert WorkflowRun.objects.filter(workflow__name="a").count() == 30


# ---------------------------------------------------------------- sweeper / dispatcher


def test_periodic_claim_evaluates_events_whose_wake_up_was_lost_oldest_first(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    settings: Any,
) -> None:
    settings.HERALD_AUTOMATION_BATCH_SIZE = 2  # one claim takes two: the job loops
    make_workflow()
    with time_machine.travel(T0, tick=False):
        events = [ingest(customer=f"c{i}") for i in range(3)]  # wake-ups never sent

    claimed = run_job("due.claim")

    assert claimed == 3
    assert sorted(WorkflowRun.objects.values_list("event_id", flat=True)) == sorted(
        e.pk for e in events
    )
    assert not Event.objects.filter(automation_pending=True).exists()
    assert run_job("due.claim") == 0  # nothing twice
    assert WorkflowRun.objects.count() == 3


def test_run_left_pending_by_a_killed_worker_is_dispatched_after_the_grace_period(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    make_workflow(actions=[{"type": "add_tags", "tags": ["buyer"]}])
    with time_machine.travel(T0, tick=False):
        due_events_process(event_ids=[ingest().pk])  # evaluated, actions never started
    run = WorkflowRun.objects.get()
    assert workflow_runs_due(now=T0 + timedelta(seconds=59), limit=10) == []
    assert workflow_runs_due(now=T0 + timedelta(seconds=60), limit=10) == [run.pk]
    from automation.workflows.runner import automation_tick

    assert automation_tick(T0 + timedelta(seconds=60)) == 1
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.customer.tags == ["buyer"]
    assert Workflow.objects.count() == 1


def test_cached_workflows_follow_a_change_made_by_another_process(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    from django.utils import timezone

    from automation.workflows.selectors import active_workflows

    workflow = make_workflow()
    assert purchase.pk in active_workflows().trigger_type_ids  # cached in this process
    # Another process deactivates it: no service call here, so no local forget.
    Workflow.objects.filter(pk=workflow.pk).update(active=False, updated_at=timezone.now())
    assert active_workflows().trigger_type_ids == frozenset()
    event = ingest()
    assert Event.objects.get(pk=event.pk).automation_pending is False
