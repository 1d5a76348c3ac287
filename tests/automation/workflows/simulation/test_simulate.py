"""Simulation over stored history: equal to live evaluation, writes nothing, 200 or 202."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.webhooks.models import Delivery
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.spec import policy_spec_of
from automation.workflows.selectors import LoadedWorkflow
from automation.workflows.simulation import services
from automation.workflows.simulation.models import Simulation
from automation.workflows.simulation.replay import Replay, ReplaySpec, Tally
from events_app.models import Event, EventType, PropertyRecord
from tests.conftest import API

pytestmark = pytest.mark.django_db

URL = f"{API}/workflows/simulate"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPEAT_BUYER = {
    "all": [
        {"count": {"event_type": "purchase", "within": "P1D"}, "op": "gte", "value": 2},
        {"property": "amount", "op": "gte", "value": 10},
    ]
}


def iso(moment: datetime) -> str:
    return moment.isoformat()


def history(ingest: Callable[..., Event]) -> list[Event]:
    """Purchases of three customers over three days, ingested at their own time."""
    plan = [
        ("alice", 0, "20"),
        ("bob", 1, "50"),
        ("alice", 5, "5"),
        ("alice", 7, "30"),
        ("carol", 8, "30"),
        ("alice", 11, "40"),
        ("bob", 20, "15"),
        ("bob", 23, "15"),
        ("alice", 30, "15"),
        ("alice", 40, "15"),
        ("carol", 50, "99"),
        ("carol", 51, "99"),
        ("alice", 60, "15"),
    ]
    events = []
    for customer, hours, amount in plan:
        moment = T0 + timedelta(hours=hours)
        with time_machine.travel(moment, tick=False):
            events.append(ingest(customer=customer, records={"amount": amount}, occurred_at=moment))
    return events


def counts() -> dict[str, int]:
    return {
        "runs": WorkflowRun.objects.count(),
        "deliveries": Delivery.objects.count(),
        "events": Event.objects.count(),
        "records": PropertyRecord.objects.count(),
        "types": EventType.objects.count(),
        "workflows": Workflow.objects.count(),
    }


# Frequency leaves only: replayed set-based (simulation.setbased) unless switched off.
BUSY_BUYER = {
    "any": [
        {"count": {"event_type": "purchase", "within": "P1D"}, "op": "gte", "value": 3},
        {
            "all": [
                {
                    "not": {
                        "count": {"event_type": "purchase", "within": "PT6H"},
                        "op": "lt",
                        "value": 2,
                    }
                },
                {
                    "count": {"event_type": "login", "within": "P2D"},
                    "op": "between",
                    "value": [0, 1],
                },
            ]
        },
    ]
}


@pytest.mark.parametrize(
    "reentry", ["every_event", "once_per_customer", "once_per_customer_per:PT12H"]
)
@pytest.mark.parametrize(
    ("conditions", "set_based"),
    [(REPEAT_BUYER, False), (BUSY_BUYER, True), (BUSY_BUYER, False)],
    ids=["streamed", "set-based", "streamed-counts"],
)
def test_a_simulation_equals_what_live_evaluation_then_does_over_the_same_events(
    purchase: Any,
    login: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    reentry: str,
    conditions: dict[str, Any],
    set_based: bool,
) -> None:
    monkeypatch.setattr(services, "SET_BASED", set_based)
    used = []
    real = services.setbased.set_based_result
    monkeypatch.setattr(
        services.setbased, "set_based_result", lambda *a, **k: used.append(1) or real(*a, **k)
    )
    workflow = make_workflow(
        conditions=conditions, actions=[{"type": "add_tags", "tags": ["x"]}], reentry=reentry
    )
    with time_machine.travel(T0 + timedelta(hours=6), tick=False):
        ingest("login", customer="bob", occurred_at=T0 + timedelta(hours=6))
    events = history(ingest)

    simulation = services.simulation_create(
        start=T0, end=T0 + timedelta(days=3), workflow_id=workflow.pk
    )
    assert simulation.status == "done"
    result = simulation.result
    assert result is not None
    assert WorkflowRun.objects.count() == 0

    for event in events:  # live evaluation, each event at its own time
        due_events_process(event_ids=[event.pk], now=event.occurred_at)
    live = {
        run.event_id: run.explanation
        for run in WorkflowRun.objects.filter(workflow=workflow).order_by("created_at")
    }
    simulated = {sample["event_id"]: sample["explanation"] for sample in result["samples"]}

    assert result["events_considered"] == len(events)
    assert result["would_run"] == len(live) > 0
    assert simulated == live
    assert bool(used) == set_based


@pytest.mark.parametrize("counted", [False, True], ids=["first-only", "first-and-counted"])
def test_first_time_conditions_see_the_events_before_the_period(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    counted: bool,
) -> None:
    first: dict[str, Any] = {"first": "purchase"}
    if counted:  # purchases are then streamed from a window before the period
        count = {"count": {"event_type": "purchase", "within": "PT2H"}, "op": "gte", "value": 1}
        first = {"all": [first, count]}
    workflow = make_workflow(conditions=first)
    events = history(ingest)
    start = T0 + timedelta(hours=6)

    result = services.simulation_create(
        start=start, end=T0 + timedelta(days=3), workflow_id=workflow.pk
    ).result

    for event in events:
        due_events_process(event_ids=[event.pk], now=event.occurred_at)
    live = {
        run.event_id
        for run in WorkflowRun.objects.filter(event__occurred_at__gte=start, workflow=workflow)
    }
    assert result is not None
    assert {s["event_id"] for s in result["samples"]} == live
    assert len(live) == 1  # carol's first purchase, at +8h


def test_simulation_funnel_counts_each_leaf_and_names_the_one_that_filtered_most(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)

    result = services.simulation_create(
        start=T0, end=T0 + timedelta(days=3), workflow_id=workflow.pk
    ).result

    assert result is not None
    # Repeat purchases within a day: alice@5,7,11,30(no: 19h after 11 -> 2),..., see history.
    by_path = {leaf["path"]: leaf for leaf in result["leaves"]}
    assert set(by_path) == {"conditions.all[0]", "conditions.all[1]"}
    assert by_path["conditions.all[0]"]["evaluated"] == 13
    assert by_path["conditions.all[1]"] == {
        "path": "conditions.all[1]",
        "evaluated": 13,
        "matched": 12,
    }
    assert result["filtered_out_most"] == "conditions.all[0]"
    assert result["capped"] == 0
    assert result["caps_simulated"] is False


def test_frequency_conditions_see_history_before_the_period(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    # alice bought at +0h; her purchase at +5h (amount 5) and +7h see it from before.
    result = services.simulation_create(
        start=T0 + timedelta(hours=6), end=T0 + timedelta(hours=9), workflow_id=workflow.pk
    ).result
    assert result is not None
    assert result["events_considered"] == 2  # alice +7h, carol +8h
    assert [s["customer_id"] for s in result["samples"]] == [
        Event.objects.get(occurred_at=T0 + timedelta(hours=7)).customer_id
    ]


def test_simulation_writes_nothing_but_its_own_row(
    allow_loopback: None,
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    workflow = make_workflow(
        conditions=REPEAT_BUYER,
        actions=[
            {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
            {"type": "add_tags", "tags": ["t"]},
        ],
    )
    history(ingest)
    before = counts()

    response = api.post(
        URL,
        {"workflow_id": workflow.pk, "from": iso(T0), "to": iso(T0 + timedelta(days=3))},
        format="json",
    )

    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["status"] == "done"
    assert data["result"]["would_run"] > 0
    assert counts() == before
    assert Simulation.objects.count() == 1
    assert not Event.objects.filter(automation_pending=False).exists()


def test_an_unsaved_workflow_body_is_simulated_without_being_stored(
    api: APIClient, purchase: Any, ingest: Callable[..., Event]
) -> None:
    history(ingest)
    body = {
        "workflow": {"trigger_event_types": ["purchase"], "conditions": REPEAT_BUYER},
        "from": iso(T0),
        "to": iso(T0 + timedelta(days=3)),
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["workflow_id"] is None
    assert data["result"]["events_considered"] == 13
    assert Workflow.objects.count() == 0


def test_a_large_range_answers_202_and_the_result_is_polled(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(services, "SMALL_RANGE", 3)
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(
            URL,
            {"workflow_id": workflow.pk, "from": iso(T0), "to": iso(T0 + timedelta(days=3))},
            format="json",
        )
    assert response.status_code == 202, response.json()
    simulation_id = response.json()["data"]["simulation_id"]
    polled = api.get(f"{API}/workflows/simulations/{simulation_id}").json()["data"]
    assert (polled["status"], polled["result"]) == ("running", None)

    for callback in callbacks:  # the background task, inline
        callback()

    polled = api.get(f"{API}/workflows/simulations/{simulation_id}").json()["data"]
    assert polled["status"] == "done"
    assert polled["progress"] == 1.0
    assert polled["result"]["events_considered"] == 13


def test_a_second_run_of_a_finished_simulation_does_nothing(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    simulation = services.simulation_create(
        start=T0, end=T0 + timedelta(days=3), workflow_id=workflow.pk
    )
    assert services.simulation_run(simulation_id=simulation.pk) is False


def test_a_stale_running_simulation_is_handed_on_again_and_finishes(
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(services, "SMALL_RANGE", 0)
    workflow = make_workflow(conditions=REPEAT_BUYER)
    history(ingest)
    with django_capture_on_commit_callbacks(execute=False):  # the task's message is lost
        simulation = services.simulation_create(
            start=T0, end=T0 + timedelta(days=3), workflow_id=workflow.pk
        )
    later = datetime.now(UTC) + services.STALE_AFTER * 2

    assert services.simulations_resume_stale(later) == 1  # tests run tasks inline

    simulation.refresh_from_db()
    assert simulation.status == "done"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": "2026-03-02T00:00:00", "to": "2026-03-03T00:00:00+00:00"}, "from"),
        ({"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, "to"),
        ({"from": "2026-03-02T00:00:00+16:00", "to": "2026-03-03T00:00:00Z"}, "from"),
        ({"from": "not a date", "to": "2026-03-03T00:00:00Z"}, "from"),
        ({"from": "2026-03-02T00:00:00Z\u0000", "to": "2026-03-03T00:00:00Z"}, "from"),
    ],
)
def test_bad_periods_answer_400_and_write_nothing(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    body: dict[str, Any],
    field: str,
) -> None:
    workflow = make_workflow()
    response = api.post(URL, {"workflow_id": workflow.pk, **body}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["details"]
    assert Simulation.objects.count() == 0


def test_both_or_neither_workflow_answers_400(api: APIClient, purchase: Any) -> None:
    period = {"from": iso(T0), "to": iso(T0 + timedelta(days=1))}
    response = api.post(URL, period, format="json")
    assert response.status_code == 400
    assert "workflow_id" in response.json()["details"]
    response = api.post(
        URL,
        {**period, "workflow_id": "x", "workflow": {"trigger_event_types": ["purchase"]}},
        format="json",
    )
    assert response.status_code == 400
    assert Simulation.objects.count() == 0


def test_an_invalid_workflow_body_answers_400_by_path(api: APIClient, purchase: Any) -> None:
    body = {
        "workflow": {
            "trigger_event_types": ["purchase"],
            "conditions": {"property": "amount", "op": "nope", "value": 1},
        },
        "from": iso(T0),
        "to": iso(T0 + timedelta(days=1)),
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert any(key.startswith("workflow.conditions") for key in response.json()["details"])
    assert Simulation.objects.count() == 0


def test_an_unknown_simulation_or_workflow_answers_404(api: APIClient, purchase: Any) -> None:
    assert api.get(f"{API}/workflows/simulations/nope").status_code == 404
    response = api.post(
        URL,
        {"workflow_id": "nope", "from": iso(T0), "to": iso(T0 + timedelta(days=1))},
        format="json",
    )
    assert response.status_code == 404
    assert Simulation.objects.count() == 0


def test_caps_count_simulated_successes_per_customer_in_the_rolling_window(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(actions=[{"type": "add_tags", "tags": ["x"]}])
    history(ingest)
    policy = policy_spec_of(
        {"key": "p", "caps": [{"count": 2, "window": "P1D", "actions": ["add_tags"]}]}
    )
    replay = Replay(
        ReplaySpec(
            workflow=LoadedWorkflow.of(workflow, type_ids={}),
            trigger_type_ids=frozenset({purchase.pk}),
            policy=policy,
        ),
        start=T0,
        end=T0 + timedelta(days=3),
    )
    tally = Tally()
    for page in replay.pages():
        tally.add(page)

    # alice within a day of each other: +0 +5 +7 (capped) +11 (capped); +30 +40 +60 -> +60
    # sees +40 only... bob +1 +20 +23 (capped); carol +8 +50 +51.
    capped = [s for s in tally.samples if s["capped"]]
    assert tally.would_run == 13
    assert len(capped) == tally.capped == 3
    assert capped[0]["capped"] == "capped: 2 of 2 add_tags actions in the last 1 day"


def test_a_workflows_delivery_policy_caps_are_simulated(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    from automation.workflows.policies.services import delivery_policy_create

    delivery_policy_create(
        data={"key": "daily", "caps": [{"count": 2, "window": "P1D", "actions": ["add_tags"]}]}
    )
    actions = [{"type": "add_tags", "tags": ["x"]}]
    workflow = make_workflow(actions=actions, delivery_policy="daily")
    history(ingest)
    period = {"from": iso(T0), "to": iso(T0 + timedelta(days=3))}

    saved = api.post(URL, {"workflow_id": workflow.pk, **period}, format="json")
    unsaved = api.post(
        URL,
        {
            "workflow": {
                "trigger_event_types": ["purchase"],
                "actions": actions,
                "delivery_policy": "daily",
            },
            **period,
        },
        format="json",
    )

    for response in (saved, unsaved):
        assert response.status_code == 200, response.json()
        result = response.json()["data"]["result"]
        assert (result["would_run"], result["capped"], result["caps_simulated"]) == (13, 3, True)


def test_simulated_caps_count_the_real_actions_other_workflows_took_under_the_policy(
    api: APIClient,
    purchase: Any,
    make_workflow: Callable[..., Workflow],
    ingest: Callable[..., Event],
) -> None:
    from automation.workflows.policies.models import PolicyUsage
    from automation.workflows.policies.services import delivery_policy_create
    from customers.models import Customer

    # Given a daily cap of 2 shared by the simulated workflow and another one
    daily = delivery_policy_create(
        data={"key": "daily", "caps": [{"count": 2, "window": "P1D", "actions": ["add_tags"]}]}
    )
    other_policy = delivery_policy_create(
        data={"key": "other", "caps": [{"count": 2, "window": "P1D", "actions": ["add_tags"]}]}
    )
    actions = [{"type": "add_tags", "tags": ["x"]}]
    workflow = make_workflow(actions=actions, delivery_policy="daily")
    neighbour = make_workflow(name="Neighbour", actions=actions, delivery_policy="daily")
    history(ingest)
    alice = Customer.objects.get(external_id="alice")
    bob = Customer.objects.get(external_id="bob")

    def used(customer: Customer, hours: float, workflow: Workflow, policy: Any = daily) -> None:
        run = WorkflowRun.objects.create(
            workflow=workflow, customer=customer, actions=actions, created_at=T0
        )
        PolicyUsage.objects.create(
            policy=policy,
            customer=customer,
            action_type="add_tags",
            at=T0 + timedelta(hours=hours),
            workflow_run_id=run.pk,
        )

    # and real usage: alice's neighbour action an hour before the period and one of the
    # simulated workflow's own before it (they count until +23 h and +22 h), bob's
    # neighbour action at +10 h; and rows that must not count: the simulated workflow's
    # own inside the period (its replay stands for it), another policy's, and one after
    # alice's last purchase.
    used(alice, -1, neighbour)
    used(alice, -2, workflow)
    used(bob, 10, neighbour)
    used(alice, 6, workflow)
    used(alice, 6, neighbour, other_policy)
    used(alice, 61, neighbour)

    response = api.post(
        URL,
        {"workflow_id": workflow.pk, "from": iso(T0), "to": iso(T0 + timedelta(days=3))},
        format="json",
    )

    # Then alice's four purchases of the first day are capped by the real usage alone,
    # and bob's +20 h and +23 h by his replayed +1 h run with the neighbour's +10 h
    assert response.status_code == 200, response.json()
    result = response.json()["data"]["result"]
    capped = [(s["customer_id"], s["occurred_at"]) for s in result["samples"] if s["capped"]]
    expected = [(alice, 0), (alice, 5), (alice, 7), (alice, 11), (bob, 20), (bob, 23)]
    assert capped == [
        (customer.pk, (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z"))
        for customer, h in expected
    ]
    assert (result["would_run"], result["capped"]) == (13, 6)
    reasons = {s["capped"] for s in result["samples"] if s["capped"]}
    assert reasons == {"capped: 2 of 2 add_tags actions in the last 1 day"}
    assert "other workflows'" in " ".join(result["notes"])
