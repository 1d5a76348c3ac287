"""The schedules API (seed 003): every endpoint, its success shape and its error paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from automation.schedules.models import Schedule, ScheduleRun
from automation.schedules.scheduler import dispatch_due_schedules
from automation.webhooks.models import Delivery, Endpoint
from tests.automation.schedules.conftest import NOW, PUBLIC_URL
from tests.conftest import API

URL = f"{API}/schedules"


@pytest.fixture(autouse=True)
def frozen() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def body(**overrides: Any) -> dict[str, Any]:
    schedule = {
        "owner": "user@example.com",
        "end_date": "2026-09-02T05:11:59.708Z",
        "interval": "*/5 * * * *",
        "callback_url": PUBLIC_URL,
        "context": {"user": 12345},
        "tags": ["prod"],
    }
    schedule.update(overrides)
    return {"schedule": {k: v for k, v in schedule.items() if v is not ...}}


def create(api: APIClient, **overrides: Any) -> dict[str, Any]:
    response = api.post(URL, body(**overrides), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    data.pop("signing_secret")  # shown only in the answer to POST
    return data


def assert_nothing_created() -> None:
    assert Schedule.objects.count() == 0
    assert Endpoint.objects.count() == 0


# ---------------------------------------------------------------- POST /schedules


def test_create_returns_the_schedule_object_inactive_with_its_first_run(api: APIClient) -> None:
    response = api.post(URL, body(), format="json")

    assert response.status_code == 201
    data = response.json()["data"]
    schedule_id = data.pop("schedule_id")
    signing_secret = data.pop("signing_secret")
    assert len(schedule_id) == 26
    assert data == {
        "status": "INACTIVE",
        "created_date": "2026-03-02T12:00:00Z",
        "owner": "user@example.com",
        "end_date": "2026-09-02T05:11:59.708000Z",
        "interval": "*/5 * * * *",
        "interval_description": "Every 5 minutes",
        "timezone": None,
        "callback_url": PUBLIC_URL,
        "context": {"user": 12345},
        "tags": ["prod"],
        "next_run_at": "2026-03-02T12:05:00Z",
        "last_run_at": None,
    }
    schedule = Schedule.objects.select_related("endpoint").get(pk=schedule_id)
    assert schedule.endpoint is not None
    assert schedule.endpoint.kind == Endpoint.Kind.SCHEDULE
    assert schedule.endpoint.url == PUBLIC_URL
    assert signing_secret == schedule.endpoint.secret
    assert signing_secret.startswith("whsec_")


def test_create_with_timezone_computes_next_run_in_that_zone(api: APIClient) -> None:
    data = create(api, interval="0 9 * * *", timezone="Europe/Prague")
    assert data["timezone"] == "Europe/Prague"
    assert data["next_run_at"] == "2026-03-03T08:00:00Z"  # 09:00 CET


def test_seed_every_second_interval_is_refused_under_the_default_minimum(api: APIClient) -> None:
    response = api.post(URL, body(interval="* * * 1 * *"), format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {
        "interval": [
            "Runs 1 s apart; the minimum interval is 60 s (HERALD_SCHEDULE_MIN_INTERVAL_SECONDS)."
        ]
    }
    assert_nothing_created()


def test_seed_every_second_interval_is_accepted_when_the_minimum_is_one(
    api: APIClient, settings: Any
) -> None:
    settings.HERALD_SCHEDULE_MIN_INTERVAL_SECONDS = 1
    data = create(api, interval="* * * 1 * *")
    assert data["next_run_at"] == "2026-04-01T00:00:00Z"
    assert data["interval_description"] == "Every second, on day 1 of the month"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"owner": "not-an-email"}, "owner", "'not-an-email' is not an email address."),
        ({"end_date": "2026-03-01T00:00:00Z"}, "end_date", "Must be in the future."),
        (
            {"interval": "0 0 31 2 *"},
            "interval",
            "day of month: no chosen month has a day 31; the schedule would never run.",
        ),
        ({"interval": "61 * * * *"}, "interval", "minute: 61 is out of range (allowed 0-59)."),
        (
            {"interval": "* * *"},
            "interval",
            "Expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a "
            "leading seconds field; got 3.",
        ),
        (
            {"timezone": "Mars/Olympus"},
            "timezone",
            "Unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Prague).",
        ),
        (
            {"interval": "0 0 1 1 *", "end_date": "2026-06-01T00:00:00Z"},
            "end_date",
            "The interval's next run (2027-01-01T00:00:00+00:00) is after end_date: "
            "the schedule would never run.",
        ),
    ],
)
def test_create_rejects_invalid_fields_with_a_reason(
    api: APIClient, overrides: dict[str, Any], field: str, message: str
) -> None:
    response = api.post(URL, body(**overrides), format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {field: [message]}
    assert response.json()["message"] == f"Invalid input: {field}: {message}"
    assert_nothing_created()


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/hook", "http://127.0.0.1:8401/hook", "ftp://93.184.215.14/x", "not a url"],
)
def test_create_rejects_callback_urls_the_outbound_guard_refuses(api: APIClient, url: str) -> None:
    response = api.post(URL, body(callback_url=url), format="json")

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["callback_url"]
    assert_nothing_created()


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (body(owner=...), "schedule"),
        (body(context=[1, 2]), "schedule.context"),
        (body(tags=["ok", 5]), "schedule.tags[1]"),
        (body(tags=[""]), "schedule.tags[0]"),
        (body(colour="red"), "schedule"),
        ({"owner": "user@example.com"}, "non_field_errors"),
    ],
)
def test_create_rejects_malformed_bodies(
    api: APIClient, payload: dict[str, Any], path: str
) -> None:
    response = api.post(URL, payload, format="json")

    assert response.status_code == 400
    assert list(response.json()["details"]) == [path]
    assert_nothing_created()


def test_create_rejects_a_non_json_body_with_415(api: APIClient) -> None:
    response = api.post(URL, "schedule=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert_nothing_created()


def test_create_needs_the_write_scope(make_api: Callable[..., APIClient]) -> None:
    response = make_api("read").post(URL, body(), format="json")
    assert response.status_code == 403
    assert_nothing_created()


# ---------------------------------------------------------------- GET


def test_get_returns_the_schedule_and_unknown_ids_are_404(api: APIClient) -> None:
    created = create(api)

    assert api.get(f"{URL}/{created['schedule_id']}").json() == {"data": created}
    missing = api.get(f"{URL}/0000000000000000000000dead")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Schedule '0000000000000000000000dead' not found."


def test_list_pages_with_limit_and_offset_newest_first(
    api: APIClient, frozen: time_machine.Coordinates
) -> None:
    ids = []
    for _ in range(3):
        ids.append(create(api)["schedule_id"])
        frozen.shift(timedelta(seconds=1))

    response = api.get(URL, {"limit": 2, "offset": 1})

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["total_items"] == 3
    assert [s["schedule_id"] for s in data["schedules"]] == [ids[1], ids[0]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "Query parameter 'limit' must be between 1 and 1000."),
        ({"limit": "x"}, "Query parameter 'limit' must be an integer."),
        ({"colour": "red"}, "Unknown query parameter(s): colour."),
        ({"sort_field": "owner"}, "Unknown sort_field 'owner'."),
    ],
)
def test_list_rejects_bad_parameters(api: APIClient, params: dict[str, str], message: str) -> None:
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response.json()["message"] == message


# ---------------------------------------------------------------- PATCH


def test_patch_changes_fields_and_recomputes_the_next_run(api: APIClient) -> None:
    created = create(api)

    response = api.patch(
        f"{URL}/{created['schedule_id']}",
        {"schedule": {"interval": "0 * * * *", "tags": ["a", "b"], "context": {"x": 1}}},
        format="json",
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["interval"] == "0 * * * *"
    assert data["interval_description"] == "Every hour"
    assert data["next_run_at"] == "2026-03-02T13:00:00Z"
    assert data["tags"] == ["a", "b"]
    assert data["context"] == {"x": 1}


def test_patch_callback_url_moves_the_endpoint(api: APIClient) -> None:
    created = create(api)
    new_url = "https://93.184.215.15/other"

    response = api.patch(
        f"{URL}/{created['schedule_id']}", {"schedule": {"callback_url": new_url}}, format="json"
    )

    assert response.status_code == 200
    assert Schedule.objects.get().endpoint.url == new_url


@pytest.mark.parametrize(
    ("fields", "detail_key"),
    [
        ({"interval": "*/0 * * * *"}, "interval"),
        ({"end_date": "2020-01-01T00:00:00Z"}, "end_date"),
        ({"callback_url": "http://192.168.1.1/"}, "callback_url"),
        ({"owner": "x@example.com"}, "schedule"),
    ],
)
def test_patch_rejects_invalid_changes_and_leaves_the_schedule_unchanged(
    api: APIClient, fields: dict[str, Any], detail_key: str
) -> None:
    created = create(api)

    response = api.patch(f"{URL}/{created['schedule_id']}", {"schedule": fields}, format="json")

    assert response.status_code == 400
    assert list(response.json()["details"]) == [detail_key]
    assert api.get(f"{URL}/{created['schedule_id']}").json()["data"] == created
    assert Schedule.objects.get().endpoint.url == PUBLIC_URL


def test_patch_without_fields_is_400(api: APIClient) -> None:
    created = create(api)
    response = api.patch(f"{URL}/{created['schedule_id']}", {"schedule": {}}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "Nothing to change: give at least one field in 'schedule'."


def test_patch_of_a_finished_schedule_is_409(api: APIClient) -> None:
    created = create(api)
    Schedule.objects.update(status=Schedule.Status.FINISHED, next_run_at=None)

    response = api.patch(
        f"{URL}/{created['schedule_id']}", {"schedule": {"tags": ["x"]}}, format="json"
    )

    assert response.status_code == 409
    assert Schedule.objects.get().tags == ["prod"]


def test_patch_of_an_unknown_schedule_is_404(api: APIClient) -> None:
    response = api.patch(f"{URL}/nope", {"schedule": {"tags": []}}, format="json")
    assert response.status_code == 404


# ---------------------------------------------------------------- DELETE


def test_delete_returns_the_deleted_object_and_no_callback_follows(
    api: APIClient, frozen: time_machine.Coordinates
) -> None:
    created = create(api)
    frozen.move_to(NOW + timedelta(minutes=5))
    dispatch_due_schedules()  # one run with a pending delivery
    assert Delivery.objects.filter(status="pending").count() == 1

    response = api.delete(f"{URL}/{created['schedule_id']}")

    assert response.status_code == 200
    deleted = response.json()["data"]
    assert deleted["schedule_id"] == created["schedule_id"]
    assert deleted["status"] == "INACTIVE"  # fired, its callback not called yet
    assert api.get(f"{URL}/{created['schedule_id']}").status_code == 404
    assert (Schedule.objects.count(), ScheduleRun.objects.count()) == (0, 0)
    assert (Endpoint.objects.count(), Delivery.objects.count()) == (0, 0)
    frozen.move_to(NOW + timedelta(minutes=20))
    assert dispatch_due_schedules() == 0
    assert Delivery.objects.count() == 0


def test_delete_of_an_unknown_schedule_is_404(api: APIClient) -> None:
    assert api.delete(f"{URL}/nope").status_code == 404


# ---------------------------------------------------------------- pause / resume


def test_pause_then_pause_again_is_409(api: APIClient) -> None:
    created = create(api)

    paused = api.post(f"{URL}/{created['schedule_id']}/pause")
    again = api.post(f"{URL}/{created['schedule_id']}/pause")

    assert paused.status_code == 200
    assert paused.json()["data"]["status"] == "PAUSED"
    assert paused.json()["data"]["next_run_at"] is None
    assert again.status_code == 409
    assert again.json()["message"] == (
        f"Schedule '{created['schedule_id']}' is PAUSED and cannot be paused."
    )


def test_resume_computes_the_next_run_from_now(
    api: APIClient, frozen: time_machine.Coordinates
) -> None:
    created = create(api)
    api.post(f"{URL}/{created['schedule_id']}/pause")
    frozen.move_to(NOW + timedelta(hours=3, minutes=2))

    response = api.post(f"{URL}/{created['schedule_id']}/resume")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "INACTIVE"
    assert response.json()["data"]["next_run_at"] == "2026-03-02T15:05:00Z"


def test_resume_of_a_schedule_that_is_not_paused_is_409(api: APIClient) -> None:
    created = create(api)
    response = api.post(f"{URL}/{created['schedule_id']}/resume")
    assert response.status_code == 409
    assert Schedule.objects.get().status == "INACTIVE"


def test_pause_and_resume_of_a_finished_schedule_are_409(api: APIClient) -> None:
    created = create(api)
    Schedule.objects.update(status=Schedule.Status.FINISHED, next_run_at=None)

    assert api.post(f"{URL}/{created['schedule_id']}/pause").status_code == 409
    assert api.post(f"{URL}/{created['schedule_id']}/resume").status_code == 409
    assert Schedule.objects.get().status == "FINISHED"


def test_resume_after_the_end_date_is_409(api: APIClient, frozen: time_machine.Coordinates) -> None:
    created = create(api, end_date="2026-03-03T00:00:00Z")
    api.post(f"{URL}/{created['schedule_id']}/pause")
    frozen.move_to(NOW + timedelta(days=2))

    response = api.post(f"{URL}/{created['schedule_id']}/resume")

    assert response.status_code == 409
    assert Schedule.objects.get().status == "PAUSED"


def test_pause_and_resume_of_unknown_schedules_are_404(api: APIClient) -> None:
    assert api.post(f"{URL}/nope/pause").status_code == 404
    assert api.post(f"{URL}/nope/resume").status_code == 404


# ---------------------------------------------------------------- runs


def test_runs_list_scheduled_time_actual_time_and_delivery_outcome(
    api: APIClient, frozen: time_machine.Coordinates
) -> None:
    created = create(api)
    frozen.move_to(NOW + timedelta(minutes=5, seconds=2))
    dispatch_due_schedules()

    response = api.get(f"{URL}/{created['schedule_id']}/runs")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["total_items"] == 1
    run = data["runs"][0]
    delivery = Delivery.objects.get()
    assert run == {
        "run_id": ScheduleRun.objects.get().pk,
        "scheduled_for": "2026-03-02T12:05:00Z",
        "started_at": "2026-03-02T12:05:02Z",
        "delivery_id": delivery.pk,
        "delivery_status": "pending",
        "attempt_count": 0,
        "last_status_code": None,
        "last_error": "",
    }


def test_runs_of_an_unknown_schedule_are_404(api: APIClient) -> None:
    assert api.get(f"{URL}/nope/runs").status_code == 404


# ---------------------------------------------------------------- preview


def test_preview_gives_the_next_five_runs_and_a_description(api: APIClient) -> None:
    response = api.get(f"{URL}/preview", {"interval": "0 9 * * MON-FRI"})

    assert response.status_code == 200
    assert response.json()["data"] == {
        "interval": "0 9 * * MON-FRI",
        "timezone": None,
        "interval_description": "At 09:00, Monday through Friday",
        "next_runs": [
            "2026-03-03T09:00:00Z",
            "2026-03-04T09:00:00Z",
            "2026-03-05T09:00:00Z",
            "2026-03-06T09:00:00Z",
            "2026-03-09T09:00:00Z",
        ],
    }


def test_preview_in_a_timezone_across_spring_forward(api: APIClient) -> None:
    response = api.get(
        f"{URL}/preview", {"interval": "30 2 * * SUN", "timezone": "America/New_York"}
    )
    assert response.json()["data"]["next_runs"] == [
        "2026-03-08T07:30:00Z",  # 02:30 does not exist that night: 03:30 EDT
        "2026-03-15T06:30:00Z",
        "2026-03-22T06:30:00Z",
        "2026-03-29T06:30:00Z",
        "2026-04-05T06:30:00Z",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"interval": "0 0 30 2 *"}, "day of month: no chosen month has a day 30;"),
        ({"interval": "@reboot"}, "Unknown alias '@reboot'"),
        ({"interval": "0 0 * * 1#6"}, "day of week: the '#' in '1#6' must be followed by 1-5."),
        ({}, "Query parameter 'interval' is required."),
        ({"interval": "* * * * *", "tz": "UTC"}, "Unknown query parameter(s): tz."),
        ({"interval": "* * * * *", "timezone": "Nope/Zone"}, "Unknown time zone 'Nope/Zone'"),
    ],
)
def test_preview_says_what_is_wrong(api: APIClient, params: dict[str, str], message: str) -> None:
    response = api.get(f"{URL}/preview", params)
    assert response.status_code == 400
    assert message in response.json()["message"]
