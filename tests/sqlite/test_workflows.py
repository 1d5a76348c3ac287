"""Workflows evaluated and run: the claim of pending events, the re-entry lock, the run
insert (bulk_create on SQLite, INSERT … ON CONFLICT on PostgreSQL) and every action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from customers.models import Customer
from events_app.models import Event
from project.background import run_job
from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def create_workflow(api: APIClient, **fields: Any) -> str:
    fields.setdefault("name", "Big spenders")
    fields.setdefault("trigger_event_types", ["purchase"])
    fields.setdefault("conditions", {})
    fields.setdefault("actions", [])
    return ok(post(api, "/workflows", {"workflow": fields}), 201)["workflow_id"]


def runs(api: APIClient, workflow_id: str, **params: Any) -> list[dict[str, Any]]:
    data = ok(get(api, f"/workflows/{workflow_id}/runs", {"sort_direction": "ASC", **params}))
    assert data["total_items"] == len(data["workflow_runs"])
    return data["workflow_runs"]


@pytest.fixture
def vip_welcome(api: APIClient) -> str:
    body = {"event_type": {"key": "vip_welcome", "name": "VIP welcome"}}
    return ok(post(api, "/event-types", body), 201)["event_type_id"]


def test_matching_event_runs_every_action_and_resumes_after_the_wait(
    api, purchase, vip_welcome, receiver, after_commit
):
    big = create_workflow(
        api,
        conditions={"property": "amount", "op": "gte", "value": 100},
        reentry="once_per_customer",
        actions=[
            {"type": "update_customer", "attributes": {"tier": "gold", "trial": None}},
            {"type": "add_tags", "tags": ["vip", "trial"]},
            {"type": "emit_event", "event_type": "vip_welcome", "data": {"from": "workflow"}},
            {"type": "webhook", "url": receiver.url("/vip")},
            {"type": "wait", "duration": "PT1H"},
            {"type": "remove_tags", "tags": ["trial"]},
        ],
    )
    welcome = create_workflow(
        api,
        name="Welcome",
        trigger_event_types=["vip_welcome"],
        actions=[{"type": "add_tags", "tags": ["welcomed"]}],
    )
    secret = ok(post(api, f"/workflows/{big}/reveal-secrets", {}))["webhook_secrets"]
    ok(
        post(api, "/customers", {"customer": {"external_id": "alice", "attributes": {"trial": 1}}}),
        201,
    )

    with time_machine.travel(T0, tick=False) as clock:
        with after_commit():
            event_id = ok(post(api, "/events", purchase_item("alice", amount=150)), 201)["event_id"]
        [waiting] = runs(api, big)
        customer = Customer.objects.get(external_id="alice")
        assert (waiting["event_id"], waiting["status"], waiting["position"]) == (
            event_id,
            "waiting",
            5,
        )
        assert [o["type"] for o in waiting["outcomes"]] == [
            "update_customer",
            "add_tags",
            "emit_event",
            "webhook",
            "wait",
        ]
        assert waiting["explanation"]["matched"] is True
        assert (customer.attributes, customer.tags) == (
            {"tier": "gold"},
            ["vip", "trial", "welcomed"],
        )
        emitted = Event.objects.get(event_type_id=vip_welcome)
        assert (emitted.customer_id, emitted.depth, emitted.data) == (
            customer.pk,
            1,
            {"from": "workflow"},
        )
        [welcomed] = runs(api, welcome)
        assert (welcomed["event_id"], welcomed["status"]) == (emitted.pk, "succeeded")
        [request] = receiver.wait_for(1)
        [signing_secret] = secret.values()
        payload = Webhook(signing_secret).verify(request.body, request.headers)
        assert (payload["type"], payload["workflow_run_id"], payload["event"]["event_id"]) == (
            "workflow.action",
            waiting["workflow_run_id"],
            event_id,
        )

        # Not due yet: the tick leaves the run waiting.
        clock.move_to(T0 + timedelta(minutes=59))
        with after_commit():
            run_job("workflows.tick")
        assert runs(api, big)[0]["status"] == "waiting"

        clock.move_to(T0 + timedelta(hours=1))
        with after_commit():
            run_job("workflows.tick")

    [done] = runs(api, big)
    customer.refresh_from_db()
    assert (done["status"], done["position"], done["error"]) == ("succeeded", 6, "")
    assert customer.tags == ["vip", "welcomed"]
    assert len(receiver.requests) == 1


def test_event_that_does_not_match_leaves_no_run_and_is_not_evaluated_again(
    api, purchase, after_commit
):
    workflow = create_workflow(
        api,
        conditions={"property": "amount", "op": "gte", "value": 100},
        actions=[{"type": "add_tags", "tags": ["vip"]}],
    )

    with after_commit():
        event_id = ok(post(api, "/events", purchase_item("alice", amount=50)), 201)["event_id"]
    with time_machine.travel(datetime.now(tz=UTC) + timedelta(hours=1)), after_commit():
        assert run_job("workflows.tick") == 0

    assert runs(api, workflow) == []
    assert Event.objects.get(pk=event_id).automation_pending is False
    assert Customer.objects.get(external_id="alice").tags == []


def test_batch_runs_every_matching_event_and_reentry_keeps_one_per_customer(
    api, purchase, after_commit
):
    every = create_workflow(api, name="Every", actions=[{"type": "add_tags", "tags": ["buyer"]}])
    once = create_workflow(api, name="Once", reentry="once_per_customer")
    items = [purchase_item("alice"), purchase_item("alice"), purchase_item("bob")]

    with after_commit():
        data = ok(post(api, "/events/batch", {"events": items}))
    with after_commit():
        ok(post(api, "/events", purchase_item("alice")), 201)

    ids = [v["event_id"] for v in data["valid_events"]]
    later = Event.objects.exclude(pk__in=ids).get().pk
    assert sorted((r["event_id"], r["status"]) for r in runs(api, every)) == sorted(
        (event_id, "succeeded") for event_id in [*ids, later]
    )
    # Alice's first run is for the first of her events in id order (a batch is evaluated so).
    assert sorted(r["event_id"] for r in runs(api, once)) == sorted([min(ids[:2]), ids[2]])
    assert sorted(Customer.objects.values_list("external_id", "tags")) == [
        ("alice", ["buyer"]),
        ("bob", ["buyer"]),
    ]


def test_lost_wake_up_is_found_by_the_periodic_claim(api, purchase):
    workflow = create_workflow(api, actions=[{"type": "add_tags", "tags": ["vip"]}])
    # Stored without running what the request hands on after commit (a lost wake-up).
    event_id = ok(post(api, "/events", purchase_item("alice")), 201)["event_id"]
    assert runs(api, workflow) == []

    claimed = run_job("due.claim")

    assert claimed == 1
    assert [(r["event_id"], r["status"]) for r in runs(api, workflow)] == [(event_id, "succeeded")]
    assert Customer.objects.get(external_id="alice").tags == ["vip"]
    assert run_job("due.claim") == 0


def test_failing_action_fails_the_run_and_keeps_earlier_actions(api, purchase, after_commit):
    workflow = create_workflow(
        api,
        actions=[
            {"type": "add_tags", "tags": ["seen"]},
            {"type": "emit_event", "event_type": "purchase"},  # no amount: invalid
            {"type": "add_tags", "tags": ["never"]},
        ],
    )

    with after_commit():
        ok(post(api, "/events", purchase_item("alice")), 201)

    [run] = runs(api, workflow)
    assert (run["status"], run["position"]) == ("failed", 1)
    assert run["error"].startswith("actions[1] (emit_event): ")
    assert Customer.objects.get(external_id="alice").tags == ["seen"]
    assert Event.objects.count() == 1


def test_workflow_test_explains_a_stored_event_without_running_it(api, purchase):
    workflow = create_workflow(
        api, active=False, conditions={"property": "amount", "op": "gt", "value": 5}
    )
    event_id = ok(post(api, "/events", purchase_item("alice", amount=7)), 201)["event_id"]

    data = ok(post(api, f"/workflows/{workflow}/test", {"event_id": event_id}))

    assert (data["triggered"], data["matched"]) == (True, True)
    assert [(leaf["actual"], leaf["matched"]) for leaf in data["leaves"]] == [(7, True)]
    assert runs(api, workflow) == []
    assert data["actions"] == []


def test_goal_converts_a_waiting_run_and_stats_count_it_per_branch(api, purchase, after_commit):
    """Goals, splits and the stats' outcome aggregate (json_each on SQLite,
    jsonb_array_elements on PostgreSQL), through the API."""
    body = {"event_type": {"key": "signup", "name": "Signup"}}
    ok(post(api, "/event-types", body), 201)
    split = {
        "type": "split",
        "branches": [
            {"weight": 1, "actions": [{"type": "wait", "duration": "P1D"}]},
            {"weight": 1, "actions": [{"type": "wait", "duration": "P2D"}]},
        ],
    }
    workflow = create_workflow(
        api,
        trigger_event_types=["signup"],
        actions=[split, {"type": "add_tags", "tags": ["reminded"]}],
        goal={
            "event_type": "purchase",
            "conditions": {"property": "amount", "op": "gte", "value": 10},
        },
    )
    signup = {"event": {"event_type": "signup", "customer_external_id": "alice"}}
    with time_machine.travel(T0, tick=False), after_commit():
        ok(post(api, "/events", signup), 201)
    [waiting] = runs(api, workflow)
    assert (waiting["status"], waiting["branch"] in (0, 1)) == ("waiting", True)

    with time_machine.travel(T0 + timedelta(hours=1), tick=False), after_commit():
        ok(post(api, "/events", purchase_item("alice", amount=20)), 201)

    [converted] = runs(api, workflow)
    branch = waiting["branch"]
    assert converted["status"] == "converted"
    assert [(o["index"], o.get("branch"), o["status"]) for o in converted["outcomes"]] == [
        (0, None, "succeeded"),
        (0, branch, "succeeded"),
        (1, None, "skipped"),
    ]
    assert converted["outcomes"][-1]["reason"] == "skipped: the customer converted (goal purchase)"
    stats = ok(get(api, f"/workflows/{workflow}/stats"))
    assert (stats["runs_started"], stats["converted"], stats["conversion_rate"]) == (1, 1, 1.0)
    assert [(a["type"], a["succeeded"], a["skipped"]) for a in stats["actions"]] == [
        ("split", 1, 0),
        ("add_tags", 0, 1),
    ]
    assert [
        (b["branch"], b["runs_started"], b["converted"], b["actions"][0]["succeeded"])
        for b in stats["branches"]
    ] == [(n, int(n == branch), int(n == branch), int(n == branch)) for n in (0, 1)]
