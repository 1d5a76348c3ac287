"""PATCH /events/{id} status: pending → completed | failed, once; GET ?status= as a work list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from events_app.api.event_patch import EVENT_PATCH_HANDLERS
from events_app.models import Event
from tests.conftest import API
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def patch(api, event_id: str, body, **kwargs):
    return api.patch(f"{API}/events/{event_id}", body, format="json", **kwargs)


@pytest.mark.parametrize(
    ("status", "state", "completed_at", "failed_at"),
    [
        ("completed", Event.State.COMPLETED, "2026-03-01T12:00:00Z", None),
        ("failed", Event.State.FAILED, None, "2026-03-01T12:00:00Z"),
    ],
)
def test_pending_event_is_marked_and_returned(api, status, state, completed_at, failed_at):
    event = EventFactory()

    with time_machine.travel(NOW, tick=False):
        response = patch(api, event.id, {"status": status})

    assert response.status_code == 200
    data = response.json()["data"]
    assert data == api.get(f"{API}/events/{event.id}").json()["data"]
    assert (data["event_id"], data["status"], data["state"]) == (event.id, status, state)
    assert (data["completed_at"], data["failed_at"]) == (completed_at, failed_at)
    event.refresh_from_db()
    assert event.state == state


@pytest.mark.parametrize(("first", "second"), [("completed", "failed"), ("failed", "completed")])
def test_second_update_is_rejected_with_409_and_changes_nothing(api, first, second):
    event = EventFactory()
    with time_machine.travel(NOW, tick=False):
        patch(api, event.id, {"status": first})
    before = Event.objects.values("state", "completed_at", "failed_at").get(pk=event.id)

    again = patch(api, event.id, {"status": first})
    other = patch(api, event.id, {"status": second})

    for response in (again, other):
        assert response.status_code == 409
        assert response.json() == {
            "error": "Conflict",
            "message": "Event already processed",
            "statusCode": 409,
        }
    assert Event.objects.values("state", "completed_at", "failed_at").get(pk=event.id) == before


def test_setting_completed_clears_failed_at_and_vice_versa_at_the_database_level(api):
    # A row that reached the database with failed_at set but still pending (e.g. an
    # import) must not end up with both timestamps: the CHECK constraint forbids it.
    failed_leftover = EventFactory(failed_at=NOW)
    completed_leftover = EventFactory(completed_at=NOW)

    assert patch(api, failed_leftover.id, {"status": "completed"}).status_code == 200
    assert patch(api, completed_leftover.id, {"status": "failed"}).status_code == 200

    failed_leftover.refresh_from_db()
    completed_leftover.refresh_from_db()
    assert failed_leftover.failed_at is None
    assert failed_leftover.completed_at is not None
    assert completed_leftover.completed_at is None
    assert completed_leftover.failed_at is not None


def test_unknown_event_is_404(api):
    response = patch(api, "0" * 26, {"status": "completed"})

    assert response.status_code == 404
    assert response.json()["message"] == f"Event '{'0' * 26}' not found."


@pytest.mark.parametrize(
    ("body", "message", "details"),
    [
        (
            {"status": "done"},
            "Invalid input: status: Invalid enum value 'done'",
            {"status": ["Invalid enum value 'done'"]},
        ),
        (
            {"status": "pending"},
            "Invalid input: status: Invalid enum value 'pending'",
            {"status": ["Invalid enum value 'pending'"]},
        ),
        (
            {"status": 2},
            "Invalid input: status: Expected `str`, got `int`",
            {"status": ["Expected `str`, got `int`"]},
        ),
        (
            {"status": "completed", "state": 2},
            "Field(s) state cannot be updated; writable: is_delivered, status.",
            {"state": ["This field cannot be updated."]},
        ),
        (
            {"completed_at": "2026-01-01T00:00:00Z"},
            "Field(s) completed_at cannot be updated; writable: is_delivered, status.",
            {"completed_at": ["This field cannot be updated."]},
        ),
        ({}, "Give at least one field to update (is_delivered, status).", None),
        (["completed"], "Invalid input: Expected `object`, got `array`", None),
    ],
)
def test_invalid_patch_bodies_are_400_and_change_nothing(api, body, message, details):
    event = EventFactory()

    response = patch(api, event.id, body)

    assert response.status_code == 400
    assert response.json()["message"] == message
    if details is not None:
        assert response.json()["details"] == details
    assert Event.objects.get(pk=event.id).state == Event.State.PENDING


def test_patch_body_must_be_json(api):
    event = EventFactory()

    response = api.patch(f"{API}/events/{event.id}", "status=completed", content_type="text/plain")

    assert response.status_code == 415
    assert Event.objects.get(pk=event.id).state == Event.State.PENDING


def test_patch_needs_the_write_scope(make_api):
    event = EventFactory()

    response = patch(make_api("read"), event.id, {"status": "completed"})

    assert response.status_code == 403
    assert Event.objects.get(pk=event.id).state == Event.State.PENDING


def test_status_and_is_delivered_are_the_registered_patch_handlers():
    assert list(EVENT_PATCH_HANDLERS) == ["status", "is_delivered"]


def test_status_filter_lists_the_pending_work(api):
    pending = EventFactory()
    done = EventFactory()
    failed = EventFactory()
    patch(api, done.id, {"status": "completed"})
    patch(api, failed.id, {"status": "failed"})

    def listed(status: str) -> list[str]:
        response = api.get(f"{API}/events", {"status": status})
        assert response.status_code == 200
        return [e["event_id"] for e in response.json()["data"]["events"]]

    assert listed("pending") == [pending.id]
    assert listed("completed") == [done.id]
    assert listed("failed") == [failed.id]
    assert api.get(f"{API}/events", {"status": "done"}).status_code == 400
