"""Schedule admin: list with filters, runs on the schedule page, actions through services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.scheduler import dispatch_due_schedules
from automation.webhooks.models import Delivery
from tests.automation.schedules.conftest import NOW

CHANGELIST = "/admin/automation/schedule/"


@pytest.fixture
def admin_client_(db: None) -> Client:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_changelist_shows_status_owner_interval_description_and_filters_by_tag(
    admin_client_: Client, make_schedule: Callable[..., Schedule]
) -> None:
    tagged = make_schedule(owner="tagged@example.com", tags=["billing"], interval="0 9 * * 1-5")
    make_schedule(owner="other@example.com", tags=["dev"])

    page = admin_client_.get(CHANGELIST, {"tag": "billing", "status__exact": "INACTIVE"})

    assert page.status_code == 200
    content = page.content.decode()
    assert tagged.id in content
    assert "tagged@example.com" in content
    assert "At 09:00, Monday through Friday" in content
    assert "other@example.com" not in content


def test_change_page_lists_recent_runs_with_their_delivery_outcome(
    admin_client_: Client, make_schedule: Callable[..., Schedule]
) -> None:
    schedule = make_schedule()
    dispatch_due_schedules(NOW + timedelta(minutes=1))

    page = admin_client_.get(f"{CHANGELIST}{schedule.id}/change/")

    assert page.status_code == 200
    assert "2026-03-02T12:01:00+00:00 (ran 2026-03-02T12:01:00+00:00): pending" in (
        page.content.decode()
    )
    runs = admin_client_.get("/admin/automation/schedulerun/", {"schedule": schedule.id})
    assert runs.status_code == 200
    assert schedule.id in runs.content.decode()


def test_pause_resume_and_run_now_actions_call_the_services(
    admin_client_: Client, make_schedule: Callable[..., Schedule]
) -> None:
    schedule = make_schedule()

    def act(action: str) -> None:
        response = admin_client_.post(
            CHANGELIST, {"action": action, "_selected_action": [schedule.id]}
        )
        assert response.status_code == 302

    act("pause")
    schedule.refresh_from_db()
    assert (schedule.status, schedule.next_run_at) == ("PAUSED", None)

    with time_machine.travel(NOW + timedelta(hours=2, seconds=5), tick=False):
        act("resume")
        schedule.refresh_from_db()
        assert schedule.status == "INACTIVE"
        assert schedule.next_run_at == NOW + timedelta(hours=2, minutes=1)

        act("run_now")
    schedule.refresh_from_db()
    assert (schedule.status, schedule.last_run_at) == (
        "INACTIVE",
        NOW + timedelta(hours=2, seconds=5),
    )
    assert ScheduleRun.objects.filter(schedule=schedule).count() == 1
    assert Delivery.objects.get().payload == {"user": 12345}


def test_pausing_a_paused_schedule_in_the_admin_warns_and_changes_nothing(
    admin_client_: Client, make_schedule: Callable[..., Schedule]
) -> None:
    schedule = make_schedule()
    Schedule.objects.filter(pk=schedule.pk).update(status="PAUSED", next_run_at=None)

    response = admin_client_.post(
        CHANGELIST, {"action": "pause", "_selected_action": [schedule.id]}, follow=True
    )

    assert f"{schedule.id}: Schedule &#x27;{schedule.id}&#x27; is PAUSED" in (
        response.content.decode()
    )
    schedule.refresh_from_db()
    assert schedule.status == "PAUSED"
