"""Simulation and backfill on both databases: the streaming replay (the set-based one is
PostgreSQL's), the backfill's insert of runs and its actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.workflows.models import WorkflowRun
from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REPEAT = {"count": {"event_type": "purchase", "within": "P1D"}, "op": "gte", "value": 2}


def store_history(api: APIClient) -> None:
    for hours, customer in [(0, "alice"), (1, "bob"), (5, "alice"), (20, "bob"), (30, "alice")]:
        moment = T0 + timedelta(hours=hours)
        with time_machine.travel(moment, tick=False):
            item = purchase_item(customer, occurred_at=moment.isoformat())
            ok(post(api, "/events", item), 201)


def test_simulate_replays_history_and_backfill_stores_the_same_runs_once(
    api: APIClient, purchase: str, after_commit: Any
) -> None:
    with time_machine.travel(T0 - timedelta(days=1), tick=False):
        workflow_id = ok(
            post(
                api,
                "/workflows",
                {
                    "workflow": {
                        "name": "Repeat buyers",
                        "trigger_event_types": ["purchase"],
                        "conditions": REPEAT,
                        "actions": [{"type": "add_tags", "tags": ["repeat"]}],
                        "active": False,
                    }
                },
            ),
            201,
        )["workflow_id"]
    store_history(api)
    period = {"from": T0.isoformat(), "to": (T0 + timedelta(days=2)).isoformat()}

    simulation = ok(post(api, "/workflows/simulate", {"workflow_id": workflow_id, **period}))
    assert simulation["status"] == "done"
    result = simulation["result"]
    assert (result["events_considered"], result["would_run"]) == (5, 2)  # alice +5h, bob +20h
    assert WorkflowRun.objects.count() == 0

    ok(post(api, f"/workflows/{workflow_id}/activate", {}))
    now = T0 + timedelta(days=3)
    with time_machine.travel(now, tick=False):
        for _ in range(2):
            with after_commit():
                started = ok(
                    post(api, f"/workflows/{workflow_id}/backfill", {"from": period["from"]}),
                    202,
                )
            done = ok(get(api, f"/workflows/{workflow_id}/backfills/{started['backfill_id']}"))
            assert done["status"] == "done"
    runs = WorkflowRun.objects.filter(workflow_id=workflow_id)
    assert sorted(runs.values_list("source", "status")) == [("backfill", "succeeded")] * 2
    assert {r.event_id for r in runs} == {s["event_id"] for s in result["samples"]}
