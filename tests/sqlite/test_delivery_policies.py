"""Delivery policies on both databases: the cap's check-and-take under the
(policy, customer) lock (pg_advisory_xact_lock on PostgreSQL, the one writer on SQLite)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from tests.sqlite.conftest import get, ok, post, purchase_item

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)


def test_a_cap_lets_through_its_count_then_records_capped_runs(
    api: APIClient, purchase: Any, after_commit: Any
) -> None:
    policy = {"key": "daily", "caps": [{"count": 2, "window": "P1D", "actions": ["add_tags"]}]}
    ok(post(api, "/delivery-policies", {"policy": policy}), 201)
    body = {
        "name": "Tagger",
        "trigger_event_types": ["purchase"],
        "actions": [{"type": "add_tags", "tags": ["seen"]}],
        "delivery_policy": "daily",
    }
    workflow_id = ok(post(api, "/workflows", {"workflow": body}), 201)["workflow_id"]
    with time_machine.travel(NOON, tick=False):
        for _ in range(3):
            with after_commit():
                ok(post(api, "/events", purchase_item("alice", amount=1)), 201)
    runs = ok(get(api, f"/workflows/{workflow_id}/runs"))["workflow_runs"]
    outcomes = Counter(run["outcomes"][0]["status"] for run in runs)
    assert outcomes == {"succeeded": 2, "capped": 1}
    [capped] = [r for r in runs if r["outcomes"][0]["status"] == "capped"]
    assert capped["outcomes"][0]["reason"] == "capped: 2 of 2 add_tags actions in the last 1 day"
