"""Segments on both databases, through the API and the periodic sweep: the customers'
lock (FOR NO KEY UPDATE on PostgreSQL, none on SQLite) and the facts' conditional
aggregates, the numeric cast and the regular expression of aggregated values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.segments.selectors import loaded_segments_forget
from project.background import run_job
from tests.sqlite.conftest import AfterCommit, get, ok, post

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def members(api: APIClient, key: str) -> list[str]:
    data = ok(get(api, f"/segments/{key}/members", {"sort_field": "customer_id"}))
    return sorted(m["external_id"] for m in data["members"])


def ingest(
    api: APIClient, after_commit: AfterCommit, customer: str, amount: Any, at: datetime
) -> None:
    item = {
        "event": {
            "event_type": "purchase",
            "customer_external_id": customer,
            "occurred_at": at.isoformat(),
        },
        "property_records": [{"property_id": "amount", "property_value": amount}],
    }
    with after_commit():
        ok(post(api, "/events", item), 201)


def test_segments_are_built_kept_by_events_and_by_time(
    api: APIClient, purchase: str, after_commit: AfterCommit
) -> None:
    loaded_segments_forget()
    with time_machine.travel(T0, tick=False):
        ingest(api, after_commit, "alice", "300.5", T0 - timedelta(days=1))
        with after_commit():
            ok(
                post(
                    api,
                    "/segments",
                    {
                        "segment": {
                            "key": "spenders",
                            "name": "Spenders",
                            "condition": {
                                "aggregate": {
                                    "event_type": "purchase",
                                    "property": "amount",
                                    "fn": "sum",
                                    "within": "P7D",
                                },
                                "op": "gte",
                                "value": 500,
                            },
                        }
                    },
                ),
                201,
            )
        assert members(api, "spenders") == []
        ingest(api, after_commit, "alice", 250, T0)
        ingest(api, after_commit, "bob", 1e3, T0)
        assert members(api, "spenders") == ["alice", "bob"]
    # Six days after the first purchase it leaves alice's window: she exits.
    with time_machine.travel(T0 + timedelta(days=6, minutes=1), tick=False):
        run_job("segments.sweep")
        assert members(api, "spenders") == ["bob"]
    preview = ok(
        post(
            api,
            "/segments/preview",
            {"condition": {"count": {"event_type": "purchase"}, "op": "gte", "value": 2}},
        )
    )
    assert (preview["member_count"], [c["external_id"] for c in preview["sample"]]) == (
        1,
        ["alice"],
    )


def test_a_new_segment_is_built_with_the_members_it_already_has(
    api: APIClient, purchase: str, after_commit: AfterCommit
) -> None:
    loaded_segments_forget()
    with time_machine.travel(T0, tick=False):
        ingest(api, after_commit, "alice", "5", T0 - timedelta(days=1))
        ingest(api, after_commit, "alice", "9", T0 - timedelta(days=2))
        ingest(api, after_commit, "bob", "7", T0 - timedelta(days=30))
        condition = {
            "all": [
                {"count": {"event_type": "purchase", "within": "P7D"}, "op": "gte", "value": 2},
                {"last": "purchase", "op": "within", "value": "P3D"},
            ]
        }
        with after_commit():
            segment = {"key": "regulars", "name": "Regulars", "condition": condition}
            ok(post(api, "/segments", {"segment": segment}), 201)
        assert members(api, "regulars") == ["alice"]
    # Two days later her purchase of T0 - 1 day is no longer within three days.
    with time_machine.travel(T0 + timedelta(days=2, minutes=1), tick=False):
        run_job("segments.sweep")
        assert members(api, "regulars") == []
