"""Scheduled callbacks: the scheduler's claim, run insert and advance (row by row on
SQLite, set-based on PostgreSQL), "run now", and the list's tag and context filters
(json_each on SQLite, JSON containment on PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.selectors import schedule_get
from automation.schedules.services import schedule_run_now
from automation.webhooks.models import Delivery
from project.background import run_job
from project.errors import ConflictError
from tests.sqlite.conftest import get, ok, post

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PUBLIC_URL = "https://93.184.215.14/hook"  # passes the guard without DNS; never called here


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def create_schedule(api: APIClient, url: str, **fields: Any) -> dict[str, Any]:
    body = {
        "owner": "owner@example.com",
        "end_date": iso(T0 + timedelta(days=1)),
        "interval": "* * * * *",
        "callback_url": url,
        "context": {"user": 12345},
        **fields,
    }
    return ok(post(api, "/schedules", {"schedule": body}), 201)


def schedule_runs(api: APIClient, schedule_id: str) -> list[dict[str, Any]]:
    data = ok(get(api, f"/schedules/{schedule_id}/runs", {"sort_direction": "ASC"}))
    assert data["total_items"] == len(data["runs"])
    return data["runs"]


def test_due_schedule_fires_once_per_tick_and_advances(api, receiver, after_commit):
    with time_machine.travel(T0, tick=False) as clock:
        created = create_schedule(api, receiver.url("/tick"))
        tick = T0 + timedelta(minutes=1)
        assert created["next_run_at"] == iso(tick)
        assert run_job("schedules.dispatch") == 0  # nothing due yet

        clock.move_to(tick)
        with after_commit():
            fired = run_job("schedules.dispatch")
        with after_commit():
            again = run_job("schedules.dispatch")

        schedule = ok(get(api, f"/schedules/{created['schedule_id']}"))
        runs = schedule_runs(api, created["schedule_id"])
        [request] = receiver.wait_for(1)
        payload = Webhook(created["signing_secret"]).verify(request.body, request.headers)

    assert (fired, again) == (1, 0)
    assert payload == {"user": 12345}
    assert (schedule["status"], schedule["next_run_at"], schedule["last_run_at"]) == (
        "ACTIVE",
        iso(tick + timedelta(minutes=1)),
        iso(tick),
    )
    assert [(r["scheduled_for"], r["delivery_status"], r["attempt_count"]) for r in runs] == [
        (iso(tick), "succeeded", 1)
    ]


def test_schedule_after_a_downtime_fires_once_and_skips_the_missed_ticks(api):
    with time_machine.travel(T0, tick=False) as clock:
        created = create_schedule(api, PUBLIC_URL)
        clock.move_to(T0 + timedelta(minutes=10, seconds=30))
        fired = run_job("schedules.dispatch")
        schedule = ok(get(api, f"/schedules/{created['schedule_id']}"))

    assert fired == 1
    assert [r["scheduled_for"] for r in schedule_runs(api, created["schedule_id"])] == [
        iso(T0 + timedelta(minutes=1))
    ]
    assert schedule["next_run_at"] == iso(T0 + timedelta(minutes=11))


def test_tick_past_the_end_date_finishes_the_schedule_without_a_callback(api):
    with time_machine.travel(T0, tick=False) as clock:
        created = create_schedule(api, PUBLIC_URL, end_date=iso(T0 + timedelta(seconds=90)))
        clock.move_to(T0 + timedelta(minutes=5))
        fired = run_job("schedules.dispatch")

    schedule = ok(get(api, f"/schedules/{created['schedule_id']}"))
    assert fired == 0
    assert (schedule["status"], schedule["next_run_at"]) == ("FINISHED", None)
    assert (ScheduleRun.objects.count(), Delivery.objects.count()) == (0, 0)


def test_several_due_schedules_fire_in_one_tick(api):
    with time_machine.travel(T0, tick=False) as clock:
        made = [create_schedule(api, PUBLIC_URL, context={"n": n}) for n in range(3)]
        clock.move_to(T0 + timedelta(minutes=1))
        fired = run_job("schedules.dispatch")

    assert fired == 3
    assert sorted(Delivery.objects.values_list("payload", flat=True), key=json.dumps) == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]
    assert set(Schedule.objects.values_list("next_run_at", flat=True)) == {
        T0 + timedelta(minutes=2)
    }
    assert {r.schedule_id for r in ScheduleRun.objects.all()} == {m["schedule_id"] for m in made}


def test_run_now_sends_an_extra_callback_and_keeps_the_next_run(api, receiver, after_commit):
    with time_machine.travel(T0, tick=False) as clock:
        created = create_schedule(api, receiver.url("/now"), context={"now": True})
        clock.move_to(T0 + timedelta(seconds=20))
        with after_commit():
            run = schedule_run_now(schedule=schedule_get(schedule_id=created["schedule_id"]))
        with pytest.raises(ConflictError):
            schedule_run_now(schedule=schedule_get(schedule_id=created["schedule_id"]))

    [request] = receiver.wait_for(1)
    assert json.loads(request.body) == {"now": True}
    assert run.scheduled_for == T0 + timedelta(seconds=20)
    schedule = ok(get(api, f"/schedules/{created['schedule_id']}"))
    assert (schedule["next_run_at"], schedule["last_run_at"]) == (
        iso(T0 + timedelta(minutes=1)),
        iso(T0 + timedelta(seconds=20)),
    )
    assert [r["delivery_status"] for r in schedule_runs(api, created["schedule_id"])] == [
        "succeeded"
    ]


def test_tick_that_already_ran_now_is_not_sent_twice_but_the_schedule_advances(api):
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False) as clock:
        clock.move_to(T0)
        created = create_schedule(api, PUBLIC_URL)
        clock.move_to(T0 + timedelta(minutes=1))
        schedule_run_now(schedule=schedule_get(schedule_id=created["schedule_id"]))
        fired = run_job("schedules.dispatch")

    schedule = ok(get(api, f"/schedules/{created['schedule_id']}"))
    assert fired == 0
    assert (ScheduleRun.objects.count(), Delivery.objects.count()) == (1, 1)
    assert schedule["next_run_at"] == iso(T0 + timedelta(minutes=2))


# ---------------------------------------------------------------- list filters


@pytest.fixture
def listed(api: APIClient) -> dict[str, str]:
    contexts = {
        "alice_prod": (
            "alice@example.com",
            ["prod", "billing"],
            {
                "user": 12345,
                "plan": "gold",
                "groups": [1, 2],
                "labels": ["vip"],
                "matrix": [[1, 2], [3]],
                "a.b": {"c": "dotted"},
            },
        ),
        "alice_dev": (
            "alice@example.com",
            ["dev"],
            {
                "user": "12345",
                "plan": "silver",
                "groups": [3],
                "nested": {"a": {"b": 7}},
                "matrix": [[3], [1, 2]],
            },
        ),
        "bob_prod": (
            "bob@example.com",
            ["prod"],
            {
                "user": 12345.0,
                "plan": "gold",
                "labels": ["vip", "new"],
                "items": [{"sku": "A"}],
            },
        ),
        "carol": ("carol@example.com", [], {}),
    }
    with time_machine.travel(T0, tick=False):
        return {
            name: create_schedule(api, PUBLIC_URL, owner=owner, tags=tags, context=context)[
                "schedule_id"
            ]
            for name, (owner, tags, context) in contexts.items()
        }


def found(api: APIClient, listed: dict[str, str], **params: Any) -> set[str]:
    if "query" in params:
        params["query"] = json.dumps(params["query"])
    data = ok(get(api, "/schedules", params))
    names = {v: k for k, v in listed.items()}
    found = {names[s["schedule_id"]] for s in data["schedules"]}
    assert data["total_items"] == len(found)
    return found


def context(path: list[str], value: str, kind: str, is_array: bool = False) -> dict[str, Any]:
    return {"context": [{"path": path, "value": value, "type": kind, "isArray": is_array}]}


def test_tags_filter_needs_all_of_the_tags(api, listed):
    assert found(api, listed, tags="prod") == {"alice_prod", "bob_prod"}
    assert found(api, listed, tags="prod,billing") == {"alice_prod"}
    assert found(api, listed, query={"tags": ["prod", "dev"]}) == set()
    assert found(api, listed, owner="alice@example.com", tags="prod") == {"alice_prod"}


def test_context_number_compares_numerically_and_string_exactly(api, listed):
    assert found(api, listed, query=context(["user"], "12345", "Number")) == {
        "alice_prod",
        "bob_prod",
    }
    assert found(api, listed, query=context(["user"], "12345", "String")) == {"alice_dev"}
    assert found(api, listed, query=context(["nested", "a", "b"], "7", "Number")) == {"alice_dev"}
    assert found(api, listed, query=context(["a.b", "c"], "dotted", "String")) == {"alice_prod"}


def test_context_digits_in_a_path_index_arrays(api, listed):
    assert found(api, listed, query=context(["groups", "1"], "2", "Number")) == {"alice_prod"}
    assert found(api, listed, query=context(["items", "0", "sku"], "A", "String")) == {"bob_prod"}


def test_context_is_array_means_the_array_contains_the_value(api, listed):
    assert found(api, listed, query=context(["groups"], "2", "Number", is_array=True)) == {
        "alice_prod"
    }
    assert found(api, listed, query=context(["labels"], "vip", "String", is_array=True)) == {
        "alice_prod",
        "bob_prod",
    }
    assert found(api, listed, query=context(["labels"], "1", "Number", is_array=True)) == set()
    both = {
        "context": [
            {"path": ["plan"], "value": "gold", "type": "String"},
            {"path": ["labels"], "value": "new", "type": "String", "isArray": True},
        ]
    }
    assert found(
        api, listed, query={"owner": ["alice@example.com", "bob@example.com"], **both}
    ) == {"bob_prod"}


def test_context_is_array_at_a_path_with_an_array_index(api, listed):
    query = context(["matrix", "1"], "2", "Number", is_array=True)
    assert found(api, listed, query=query) == {"alice_dev"}
