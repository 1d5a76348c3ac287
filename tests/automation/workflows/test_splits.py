"""Split actions: the pure branch choice (determinism, proportions), the steps a run
walks through, validation, and runs that go down their branch end to end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.due import due_events_process
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.runner import workflow_run_advance
from automation.workflows.splits import Step, remaining_steps, run_steps, split_branch
from customers.models import Customer
from events_app.models import Event
from tests.conftest import API

SPLIT = {
    "type": "split",
    "branches": [
        {"weight": 50, "actions": [{"type": "add_tags", "tags": ["a"]}]},
        {
            "weight": 50,
            "actions": [{"type": "add_tags", "tags": ["b"]}, {"type": "wait", "duration": "PT1H"}],
        },
    ],
}


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize("weights", [[50, 50], [20, 30, 50], [1, 9], [70, 10, 10, 10]])
def test_branches_of_10000_customers_are_within_2_percent_of_the_weights(
    weights: list[int],
) -> None:
    landed = Counter(split_branch("wf_1", f"cust_{n}", weights) for n in range(10_000))
    total = sum(weights)
    for branch, weight in enumerate(weights):
        assert abs(landed[branch] / 10_000 - weight / total) < 0.02, (branch, landed)


def test_a_customer_always_lands_in_the_same_branch_of_a_workflow() -> None:
    first = [split_branch("wf_1", f"cust_{n}", [50, 50]) for n in range(500)]
    again = [split_branch("wf_1", f"cust_{n}", [50, 50]) for n in range(500)]
    assert first == again


def test_different_workflows_split_the_same_customers_independently() -> None:
    one = [split_branch("wf_1", f"cust_{n}", [50, 50]) for n in range(2000)]
    two = [split_branch("wf_2", f"cust_{n}", [50, 50]) for n in range(2000)]
    same = sum(a == b for a, b in zip(one, two, strict=True))
    assert 0.45 < same / 2000 < 0.55


def test_steps_follow_the_chosen_branch_then_the_actions_after_the_split() -> None:
    after = {"type": "remove_tags", "tags": ["x"]}
    actions = [{"type": "add_tags", "tags": ["x"]}, SPLIT, after]
    assert run_steps(actions, None) == [Step(0, actions[0]), Step(1, SPLIT)]
    assert run_steps(actions, 1) == [
        Step(0, actions[0]),
        Step(1, SPLIT),
        Step(0, SPLIT["branches"][1]["actions"][0], 1),
        Step(1, SPLIT["branches"][1]["actions"][1], 1),
        Step(2, after),
    ]
    # Not at the split yet: the top-level actions remain, no branch entered.
    assert remaining_steps(actions, None, 1) == [Step(1, SPLIT), Step(2, after)]
    assert remaining_steps(actions, 1, 3) == [
        Step(1, SPLIT["branches"][1]["actions"][1], 1),
        Step(2, after),
    ]


# ---------------------------------------------------------------- validation


def split_with(**changes: Any) -> dict[str, Any]:
    return {**SPLIT, **changes}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("actions", "path"),
    [
        ([split_with(branches=[{"weight": 1, "actions": []}])], "actions[0].branches"),
        ([split_with(branches=[{"weight": 1, "actions": []}] * 11)], "actions[0].branches"),
        (
            [split_with(branches=[{"weight": 0, "actions": []}, {"weight": 1, "actions": []}])],
            "actions[0].branches[0].weight",
        ),
        (
            [split_with(branches=[{"weight": True, "actions": []}, {"weight": 1, "actions": []}])],
            "actions[0].branches[0].weight",
        ),
        (
            [
                split_with(
                    branches=[{"weight": 10_001, "actions": []}, {"weight": 1, "actions": []}]
                )
            ],
            "actions[0].branches[0].weight",
        ),
        (
            [split_with(branches=[{"weight": 1}, {"weight": 1, "actions": []}])],
            "actions[0].branches[0]",
        ),
        (
            [
                split_with(
                    branches=[
                        {"weight": 1, "actions": [{"type": "wait", "duration": "soon"}]},
                        {"weight": 1, "actions": []},
                    ]
                )
            ],
            "actions[0].branches[0].actions[0].duration",
        ),
        (
            [
                split_with(
                    branches=[{"weight": 1, "actions": [SPLIT]}, {"weight": 1, "actions": []}]
                )
            ],
            "actions[0].branches[0].actions[0]",
        ),
        ([SPLIT, SPLIT], "actions[1]"),
    ],
)
def test_invalid_splits_are_400_at_their_path_and_nothing_is_stored(
    api: APIClient, purchase: Any, actions: list[Any], path: str
) -> None:
    body = {"workflow": {"name": "x", "trigger_event_types": ["purchase"], "actions": actions}}
    response = api.post(f"{API}/workflows", body, format="json")
    assert response.status_code == 400, response.json()
    assert path in response.json()["details"]
    assert Workflow.objects.count() == 0


# ---------------------------------------------------------------- end to end


@pytest.mark.django_db
def test_runs_go_down_the_branch_of_their_customer_and_record_it(
    purchase: Any, make_workflow: Callable[..., Workflow], ingest: Callable[..., Event]
) -> None:
    workflow = make_workflow(actions=[SPLIT, {"type": "add_tags", "tags": ["after"]}])
    events = [ingest(customer=f"c{n}") for n in range(120)]
    for run_id in due_events_process(event_ids=[e.pk for e in events]).run_ids:
        workflow_run_advance(run_id=run_id)

    runs = list(WorkflowRun.objects.select_related("customer"))
    assert len(runs) == 120
    for run in runs:
        expected = split_branch(workflow.pk, run.customer_id, [50, 50])
        assert run.branch == expected
        tags = Customer.objects.get(pk=run.customer_id).tags
        if expected == 0:
            assert (run.status, tags) == ("succeeded", ["a", "after"])
            assert [(o["index"], o.get("branch"), o["type"]) for o in run.outcomes] == [
                (0, None, "split"),
                (0, 0, "add_tags"),
                (1, None, "add_tags"),
            ]
        else:
            # Branch 1 waits after its tag; the action after the split comes later.
            assert (run.status, tags) == ("waiting", ["b"])
            assert [(o["index"], o.get("branch"), o["type"]) for o in run.outcomes] == [
                (0, None, "split"),
                (0, 1, "add_tags"),
                (1, 1, "wait"),
            ]
        assert run.outcomes[0]["detail"] == {"branch": expected}
    landed = Counter(run.branch for run in runs)
    assert 40 <= landed[0] <= 80, landed


@pytest.mark.django_db
def test_a_webhook_action_inside_a_branch_gets_its_endpoint(
    purchase: Any, make_workflow: Callable[..., Workflow], allow_loopback: None
) -> None:
    branch = {"weight": 1, "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    workflow = make_workflow(
        actions=[{"type": "split", "branches": [branch, {"weight": 1, "actions": []}]}]
    )
    workflow.refresh_from_db()
    hook = workflow.actions[0]["branches"][0]["actions"][0]
    assert hook["endpoint_id"] == workflow.endpoint_links.get().endpoint_id
