"""Fixtures of the scheduled-callback tests: schedules made by the real service, a receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from automation.schedules.models import Schedule
from automation.schedules.services import schedule_create
from tests.receiver import Receiver, local_receiver

# A public address literal: passes the outbound URL guard without DNS; nothing is sent to it
# unless a test runs the delivery sender (those tests use the local receiver instead).
PUBLIC_URL = "https://93.184.215.14/hook"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def make_schedule(db: None) -> Callable[..., Schedule]:
    """Create a schedule through schedule_create (defaults: every minute, UTC, 30 days)."""

    def make(**overrides: Any) -> Schedule:
        fields: dict[str, Any] = {
            "owner": "owner@example.com",
            "end_date": NOW + timedelta(days=30),
            "interval": "* * * * *",
            "callback_url": PUBLIC_URL,
            "context": {"user": 12345},
            "tags": ["prod"],
            "now": NOW,
        }
        fields.update(overrides)
        return schedule_create(**fields)

    return make


@pytest.fixture
def receiver(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The shared local receiver (tests/receiver.py) on this area's ports, 8401-8499.

    The outbound guard is opened for loopback in this test only.
    """
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    monkeypatch.setenv("HERALD_TEST_PORTS", "8401-8499")
    with local_receiver() as r:
        yield r
