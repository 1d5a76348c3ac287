"""Goals: a matching event ends the customer's unfinished runs as converted; validation;
no cost without goals; the race with a run resuming from its wait; the stats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.workflows.goals import goals_reach
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import workflow_run_advance
from automation.workflows.selectors import active_workflows
from automation.workflows.services import WorkflowInput, workflow_update
from automation.workflows.splits import split_branch
from customers.models import Customer
from events_app.models import Event
from tests.conftest import API

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GOAL = {"event_type": "purchase", "conditions": {"property": "amount", "op": "gte", "value": 10}}
NURTURE = [
    {"type": "add_tags", "tags": ["welcomed"]},
    {"type": "wait", "duration": "P1D"},
    {"type": "add_tags", "tags": ["reminded"]},
    {"type": "wait", "duration": "P1D"},
    {"type": "add_tags", "tags": ["last_call"]},
]
REASON = "skipped: the customer converted (goal purchase)"


def process(*events: Event) -> None:
    for run_id in due_events_process(event_ids=[e.pk for e in events]).run_ids:
        workflow_run_advance(run_id=run_id)


def statuses(run: WorkflowRun) -> list[tuple[int, str, str]]:
    return [(o["index"], o["type"], o["status"]) for o in run.outcomes]


@pytest.fixture
def nurture(login: Any, purchase: Any, make_workflow: Callable[..., Workflow]) -> Workflow:
    return make_workflow(name="Nurture", trigger_event_types=["login"], actions=NURTURE, goal=GOAL)


@pytest.mark.django_db
def test_goal_event_ends_a_waiting_run_as_converted_and_skips_the_rest(
    nurture: Workflow, ingest: Callable[..., Event]
) -> None:
    with time_machine.travel(T0, tick=False):
        process(ingest("login"))
        run = WorkflowRun.objects.get()
        assert run.status == "waiting"
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        process(ingest("purchase", records={"amount": "5"}))  # conditions not met
        assert WorkflowRun.objects.get().status == "waiting"
        process(ingest("purchase", records={"amount": "50"}))

    run = WorkflowRun.objects.get()
    assert (run.status, run.resume_at, run.finished_at) == (
        "converted",
        None,
        T0 + timedelta(hours=2),
    )
    assert statuses(run) == [
        (0, "add_tags", "succeeded"),
        (1, "wait", "succeeded"),
        (2, "add_tags", "skipped"),
        (3, "wait", "skipped"),
        (4, "add_tags", "skipped"),
    ]
    assert {o.get("reason") for o in run.outcomes[2:]} == {REASON}
    # The wait's end passes: nothing more happens.
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        workflow_run_advance(run_id=run.pk)
    assert WorkflowRun.objects.get().status == "converted"
    assert Customer.objects.get().tags == ["welcomed"]


@pytest.mark.django_db
def test_goal_converts_only_the_customers_own_unfinished_runs_of_that_workflow(
    nurture: Workflow, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    other = make_workflow(name="No goal", trigger_event_types=["login"], actions=NURTURE)
    with time_machine.travel(T0, tick=False):
        process(ingest("login", customer="alice"), ingest("login", customer="bob"))
        process(ingest("purchase", customer="alice", records={"amount": "50"}))
    by = {
        (r.workflow_id, r.customer.external_id): r.status
        for r in WorkflowRun.objects.select_related("customer")
    }
    assert by == {
        (nurture.pk, "alice"): "converted",
        (nurture.pk, "bob"): "waiting",
        (other.pk, "alice"): "waiting",
        (other.pk, "bob"): "waiting",
    }


@pytest.mark.django_db
def test_a_finished_run_is_not_converted(
    login: Any, purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(trigger_event_types=["login"], actions=NURTURE[:1], goal=GOAL)
    process(ingest("login"))
    process(ingest("purchase", records={"amount": "50"}))
    run = WorkflowRun.objects.get()
    assert (run.status, statuses(run)) == ("succeeded", [(0, "add_tags", "succeeded")])


@pytest.mark.django_db
def test_converted_runs_are_listed_with_their_skipped_outcomes(
    api: APIClient, nurture: Workflow, ingest: Callable[..., Event]
) -> None:
    process(ingest("login"))
    process(ingest("purchase", records={"amount": "50"}))
    response = api.get(f"{API}/workflows/{nurture.pk}/runs", {"status": "converted"})
    [run] = response.json()["data"]["workflow_runs"]
    assert (run["status"], run["branch"], run["outcomes"][-1]["reason"]) == (
        "converted",
        None,
        REASON,
    )


@pytest.mark.django_db
def test_goal_event_types_are_flagged_for_the_claimer_only_while_a_goal_names_them(
    nurture: Workflow, ingest: Callable[..., Event]
) -> None:
    assert Event.objects.get(pk=ingest("purchase").pk).automation_pending is True
    workflow_update(workflow=nurture, data=WorkflowInput(goal=None))
    active_workflows()  # the stamp changed: reloaded
    assert Event.objects.get(pk=ingest("purchase").pk).automation_pending is False


@pytest.mark.django_db
def test_without_goals_reaching_goals_costs_no_query(
    login: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    make_workflow(trigger_event_types=["login"], actions=NURTURE)
    event = ingest("login")
    workflows = active_workflows()
    with CaptureQueriesContext(connection) as queries:
        assert goals_reach(events=[event], problems={}, workflows=workflows, now=T0) == 0
    assert len(queries) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("goal", "path"),
    [
        ({"event_type": "refund"}, "goal.event_type"),
        ({"event_type": "purchase", "colour": 1}, "goal"),
        ({"conditions": {}}, "goal"),
        ({"event_type": 5}, "goal.event_type"),
        ({"event_type": "purchase", "conditions": []}, "goal.conditions"),
        (
            {"event_type": "purchase", "conditions": {"property": "amount", "op": "bigger"}},
            "goal.conditions.op",
        ),
    ],
)
def test_invalid_goals_are_400_at_their_path_and_nothing_is_stored(
    api: APIClient, purchase: Any, goal: Any, path: str
) -> None:
    body = {"workflow": {"name": "x", "trigger_event_types": ["purchase"], "goal": goal}}
    response = api.post(f"{API}/workflows", body, format="json")
    assert response.status_code == 400, response.json()
    assert path in response.json()["details"], response.json()
    assert Workflow.objects.count() == 0


@pytest.mark.django_db
def test_goal_is_shown_kept_by_a_patch_without_it_and_removed_by_null(
    contract_api: APIClient, purchase: Any
) -> None:
    api = contract_api
    body = {"workflow": {"name": "x", "trigger_event_types": ["purchase"], "goal": GOAL}}
    workflow_id = api.post(f"{API}/workflows", body, format="json").json()["data"]["workflow_id"]
    url = f"{API}/workflows/{workflow_id}"
    assert api.get(url).json()["data"]["goal"] == GOAL
    patched = api.patch(url, {"workflow": {"name": "y"}}, format="json").json()["data"]
    assert patched["goal"] == GOAL
    cleared = api.patch(url, {"workflow": {"goal": None}}, format="json").json()["data"]
    assert cleared["goal"] is None


# ---------------------------------------------------------------- the race


@pytest.mark.django_db(transaction=True)
def test_run_resuming_at_the_goal_moment_performs_its_action_or_skips_it_never_both(
    login: Any, purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    """A worker holds the run's row lock while performing its next action; the goal's
    claim waits for it, then converts the run from the action after."""
    make_workflow(trigger_event_types=["login"], actions=NURTURE, goal={"event_type": "purchase"})
    alice = Customer.objects.create(external_id="alice")

    def flagged(event_type: Any) -> Event:
        # As ingestion writes it (the flag with the insert), without its wake-up.
        return Event.objects.create(
            event_type=event_type, customer=alice, occurred_at=T0, automation_pending=True
        )

    with time_machine.travel(T0, tick=False):
        process(flagged(login))
    run = WorkflowRun.objects.get()
    assert run.status == "waiting"
    goal_event = flagged(purchase)
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def resume_with_a_slow_action() -> None:
        try:
            with transaction.atomic():
                held = WorkflowRun.objects.select_for_update().get(pk=run.pk)
                locked.set()
                release.wait(10)
                # What the runner records after performing action 2 (the second tag).
                held.outcomes = [
                    *held.outcomes,
                    {"index": 2, "type": "add_tags", "status": "succeeded"},
                ]
                held.position, held.status = 3, "pending"
                held.save(update_fields=["outcomes", "position", "status"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def claim() -> None:
        try:
            due_events_process(event_ids=[goal_event.pk])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=resume_with_a_slow_action)
    worker.start()
    assert locked.wait(10)
    claimer = threading.Thread(target=claim)
    claimer.start()
    claimer.join(0.5)
    assert claimer.is_alive()  # waiting for the run's row lock
    release.set()
    worker.join(10)
    claimer.join(10)
    assert not errors, errors

    run.refresh_from_db()
    assert run.status == "converted"
    assert statuses(run) == [
        (0, "add_tags", "succeeded"),
        (1, "wait", "succeeded"),
        (2, "add_tags", "succeeded"),
        (3, "wait", "skipped"),
        (4, "add_tags", "skipped"),
    ]


# ---------------------------------------------------------------- stats


@pytest.mark.django_db
def test_stats_count_runs_conversions_and_outcomes_per_action_and_branch(
    api: APIClient,
    login: Any,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    split = {
        "type": "split",
        "branches": [
            {"weight": 1, "actions": [{"type": "wait", "duration": "P1D"}]},
            {"weight": 1, "actions": [{"type": "add_tags", "tags": ["b"]}]},
        ],
    }
    workflow = make_workflow(
        trigger_event_types=["login"],
        actions=[
            {"type": "add_tags", "tags": ["in"]},
            split,
            {"type": "add_tags", "tags": ["out"]},
        ],
        goal={"event_type": "purchase"},
    )
    names = [f"c{n}" for n in range(16)]
    with time_machine.travel(T0, tick=False):
        process(*[ingest("login", customer=name) for name in names])
    runs = {r.customer.external_id: r for r in WorkflowRun.objects.select_related("customer")}
    branch = {name: split_branch(workflow.pk, runs[name].customer_id, [1, 1]) for name in names}
    in_0 = [n for n in names if branch[n] == 0]  # waiting in branch 0
    in_1 = [n for n in names if branch[n] == 1]  # finished
    assert len(in_0) >= 2  # 16 customers, even weights: all but certain
    assert in_1
    # Two of branch 0's customers buy while they wait: converted.
    buyers = in_0[:2]
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        process(*[ingest("purchase", customer=name) for name in buyers])

    data = api.get(f"{API}/workflows/{workflow.pk}/stats").json()["data"]

    zero = {"failed": 0, "capped": 0, "deferred": 0}
    assert data == {
        "runs_started": 16,
        "converted": len(buyers),
        "conversion_rate": round(len(buyers) / 16, 4),
        "actions": [
            {"index": 0, "type": "add_tags", "succeeded": 16, "skipped": 0, **zero},
            {"index": 1, "type": "split", "succeeded": 16, "skipped": 0, **zero},
            {
                "index": 2,
                "type": "add_tags",
                "succeeded": len(in_1),
                "skipped": len(buyers),
                **zero,
            },
        ],
        "branches": [
            {
                "branch": 0,
                "weight": 1,
                "runs_started": len(in_0),
                "converted": len(buyers),
                "conversion_rate": round(len(buyers) / len(in_0), 4),
                "actions": [
                    {"index": 0, "type": "wait", "succeeded": len(in_0), "skipped": 0, **zero}
                ],
            },
            {
                "branch": 1,
                "weight": 1,
                "runs_started": len(in_1),
                "converted": 0,
                "conversion_rate": 0.0,
                "actions": [
                    {"index": 0, "type": "add_tags", "succeeded": len(in_1), "skipped": 0, **zero}
                ],
            },
        ],
    }


@pytest.mark.django_db
def test_stats_of_a_workflow_without_runs_are_zero_and_unknown_workflow_is_404(
    contract_api: APIClient, purchase: Any, make_workflow: Callable[..., Workflow]
) -> None:
    workflow = make_workflow(actions=[{"type": "add_tags", "tags": ["x"]}])
    response = contract_api.get(f"{API}/workflows/{workflow.pk}/stats")
    assert response.status_code == 200
    assert response.json()["data"] == {
        "runs_started": 0,
        "converted": 0,
        "conversion_rate": 0.0,
        "actions": [
            {
                "index": 0,
                "type": "add_tags",
                "succeeded": 0,
                "failed": 0,
                "skipped": 0,
                "capped": 0,
                "deferred": 0,
            }
        ],
        "branches": [],
    }
    assert contract_api.get(f"{API}/workflows/nope/stats").status_code == 404


@pytest.mark.django_db
def test_a_run_not_started_yet_is_converted_with_every_action_skipped(
    nurture: Workflow, ingest: Callable[..., Event]
) -> None:
    due_events_process(event_ids=[ingest("login").pk])  # the run exists, not advanced
    process(ingest("purchase", records={"amount": "50"}))
    run = WorkflowRun.objects.get()
    assert (run.status, run.position) == ("converted", 0)
    assert [o["status"] for o in run.outcomes] == ["skipped"] * len(NURTURE)
    workflow_run_advance(run_id=run.pk)  # its task arrives late: nothing happens
    assert Customer.objects.get().tags == []


@pytest.mark.django_db
def test_a_run_converted_before_its_split_enters_no_branch(
    login: Any, purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    split = {
        "type": "split",
        "branches": [
            {"weight": 1, "actions": [{"type": "add_tags", "tags": ["a"]}]},
            {"weight": 1, "actions": [{"type": "add_tags", "tags": ["b"]}]},
        ],
    }
    make_workflow(
        trigger_event_types=["login"],
        actions=[{"type": "wait", "duration": "P1D"}, split, {"type": "add_tags", "tags": ["z"]}],
        goal={"event_type": "purchase"},
    )
    process(ingest("login"))
    process(ingest("purchase"))
    run = WorkflowRun.objects.get()
    assert (run.status, run.branch) == ("converted", None)
    assert [(o["index"], o.get("branch"), o["status"]) for o in run.outcomes] == [
        (0, None, "succeeded"),
        (1, None, "skipped"),
        (2, None, "skipped"),
    ]
