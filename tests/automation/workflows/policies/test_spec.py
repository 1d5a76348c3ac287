"""The pure policy: validation, cap reasons, and quiet hours across midnight and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automation.workflows.policies.spec import (
    ALLOWED,
    CAPPED,
    DEFERRED,
    SKIPPED,
    Cap,
    cap_block_reason,
    policy_errors,
    policy_spec_of,
    quiet_hours_until,
    verdict,
)

PRAGUE = ZoneInfo("Europe/Prague")
TYPES = {"webhook", "emit_event", "add_tags"}


def policy(
    start: str = "21:00", end: str = "08:00", on_blocked: str = "defer", **extra: Any
) -> dict[str, Any]:
    return {
        "key": "default",
        "caps": [{"count": 3, "window": "P7D", "actions": ["webhook"]}],
        "quiet_hours": {
            "start": start,
            "end": end,
            "timezone_attribute": "timezone",
            "default_timezone": "Europe/Prague",
        },
        "on_blocked": on_blocked,
        **extra,
    }


def prague(*args: int) -> datetime:
    return datetime(*args, tzinfo=PRAGUE)  # type: ignore[misc]


def test_a_valid_policy_has_no_errors_and_parses() -> None:
    assert policy_errors(policy(), action_types=TYPES) == {}
    spec = policy_spec_of(policy())
    assert spec.caps == (Cap(count=3, window=timedelta(days=7), actions=("webhook",)),)
    assert spec.quiet_hours is not None
    assert spec.quiet_hours.crosses_midnight()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"caps": [{"count": 0, "window": "P7D", "actions": ["webhook"]}]}, "caps[0].count"),
        ({"caps": [{"count": 10001, "window": "P7D", "actions": ["webhook"]}]}, "caps[0].count"),
        ({"caps": [{"count": True, "window": "P7D", "actions": ["webhook"]}]}, "caps[0].count"),
        ({"caps": [{"count": 3, "window": "P1M", "actions": ["webhook"]}]}, "caps[0].window"),
        ({"caps": [{"count": 3, "window": "7 days", "actions": ["webhook"]}]}, "caps[0].window"),
        ({"caps": [{"count": 3, "window": "P7D", "actions": ["sms"]}]}, "caps[0].actions"),
        ({"caps": [{"count": 3, "window": "P7D", "actions": []}]}, "caps[0].actions"),
        ({"on_blocked": "drop"}, "on_blocked"),
        ({"key": "no spaces"}, "key"),
    ],
)
def test_invalid_fields_are_reported_at_their_path(change: dict[str, Any], path: str) -> None:
    assert path in policy_errors({**policy(), **change}, action_types=TYPES)


def test_a_quiet_window_from_a_time_to_itself_is_invalid() -> None:
    errors = policy_errors(policy(start="21:00", end="21:00"), action_types=TYPES)
    assert list(errors) == ["quiet_hours.end"]


@pytest.mark.parametrize("bad", ["Europe/Nowhere", "../../etc/passwd", "", "Europe/Prague\x00"])
def test_the_default_time_zone_must_be_an_iana_name(bad: str) -> None:
    data = policy()
    data["quiet_hours"]["default_timezone"] = bad
    assert list(policy_errors(data, action_types=TYPES)) == ["quiet_hours.default_timezone"]


@pytest.mark.parametrize("clock", ["24:00", "8:00", "08:60", "0800", "08:00:00"])
def test_times_must_be_hh_mm(clock: str) -> None:
    assert "quiet_hours.start" in policy_errors(policy(start=clock), action_types=TYPES)


def test_cap_reason_reads_as_a_sentence() -> None:
    cap = Cap(count=3, window=timedelta(days=7), actions=("webhook",))
    assert cap_block_reason(cap, 2) is None
    assert cap_block_reason(cap, 3) == "capped: 3 of 3 webhook actions in the last 7 days"
    hourly = Cap(count=1, window=timedelta(hours=1), actions=("webhook", "emit_event"))
    assert cap_block_reason(hourly, 1) == (
        "capped: 1 of 1 webhook or emit_event actions in the last 1 hour"
    )


def test_quiet_hours_crossing_midnight_end_the_next_morning_or_this_morning() -> None:
    spec = policy_spec_of(policy())
    evening = prague(2026, 12, 7, 22, 30)
    assert quiet_hours_until(spec, None, evening) == prague(2026, 12, 8, 8, 0)
    early = prague(2026, 12, 8, 3, 0)
    assert quiet_hours_until(spec, None, early) == prague(2026, 12, 8, 8, 0)
    assert quiet_hours_until(spec, None, prague(2026, 12, 8, 8, 0)) is None  # end excluded
    assert quiet_hours_until(spec, None, prague(2026, 12, 7, 21, 0)) is not None  # start included
    assert quiet_hours_until(spec, None, prague(2026, 12, 7, 12, 0)) is None


def test_a_daytime_window_ends_the_same_day() -> None:
    spec = policy_spec_of(policy(start="12:00", end="14:00"))
    assert quiet_hours_until(spec, None, prague(2026, 12, 7, 13, 0)) == prague(2026, 12, 7, 14, 0)
    assert quiet_hours_until(spec, None, prague(2026, 12, 7, 14, 0)) is None
    assert quiet_hours_until(spec, None, prague(2026, 12, 7, 11, 59)) is None


def test_spring_forward_night_ends_at_the_wall_clock_end_in_summer_time() -> None:
    # 2026-03-29: Prague's clocks jump from 02:00 CET to 03:00 CEST.
    spec = policy_spec_of(policy())
    until = quiet_hours_until(spec, None, datetime(2026, 3, 28, 21, 0, tzinfo=UTC))
    assert until is not None
    assert until.isoformat() == "2026-03-29T08:00:00+02:00"
    assert until.astimezone(UTC) - datetime(2026, 3, 28, 21, 0, tzinfo=UTC) == timedelta(
        hours=9
    )  # 22:00 to 08:00: one hour less than the ten the wall clock shows


def test_an_end_that_does_not_exist_on_spring_forward_is_the_first_instant_after_the_gap() -> None:
    spec = policy_spec_of(policy(start="01:00", end="02:30"))
    until = quiet_hours_until(spec, None, datetime(2026, 3, 29, 0, 30, tzinfo=UTC))  # 01:30 CET
    assert until is not None
    assert until.isoformat() == "2026-03-29T03:00:00+02:00"
    assert until.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_fall_back_night_ends_at_the_wall_clock_end_in_winter_time() -> None:
    # 2026-10-25: Prague's clocks go back from 03:00 CEST to 02:00 CET.
    spec = policy_spec_of(policy())
    until = quiet_hours_until(spec, None, datetime(2026, 10, 24, 20, 0, tzinfo=UTC))  # 22:00
    assert until is not None
    assert until.isoformat() == "2026-10-25T08:00:00+01:00"
    assert until.astimezone(UTC) - datetime(2026, 10, 24, 20, 0, tzinfo=UTC) == timedelta(hours=11)


def test_an_ambiguous_end_on_fall_back_is_its_first_occurrence() -> None:
    spec = policy_spec_of(policy(start="01:00", end="02:30"))
    until = quiet_hours_until(spec, None, datetime(2026, 10, 24, 23, 30, tzinfo=UTC))  # 01:30
    assert until is not None
    assert until.isoformat() == "2026-10-25T02:30:00+02:00"


def test_the_customers_zone_decides_and_an_invalid_one_falls_back_with_a_reason() -> None:
    spec = policy_spec_of(policy())
    now = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)  # 23:00 Prague, 17:00 New York
    assert verdict(spec, action_type="webhook", tz_name="America/New_York", now=now).allowed
    fallback = verdict(spec, action_type="webhook", tz_name="Mars/Olympus", now=now)
    assert fallback.status == DEFERRED
    assert fallback.reason == (
        "deferred to 2026-12-08T08:00:00+01:00 (quiet hours, Europe/Prague; "
        "the customer's timezone 'Mars/Olympus' is not an IANA time zone)"
    )


def test_verdicts_defer_or_skip_in_quiet_hours_and_cap_outside_them() -> None:
    now = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
    deferring = policy_spec_of(policy())
    deferred = verdict(deferring, action_type="webhook", tz_name="Europe/Prague", now=now)
    assert (deferred.status, deferred.reason) == (
        DEFERRED,
        "deferred to 2026-12-08T08:00:00+01:00 (quiet hours, Europe/Prague)",
    )
    skipping = policy_spec_of(policy(on_blocked="skip"))
    skipped = verdict(skipping, action_type="webhook", tz_name=None, now=now)
    assert skipped.status == SKIPPED
    assert skipped.reason == "skipped: quiet hours until 2026-12-08T08:00:00+01:00 (Europe/Prague)"
    noon = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    cap = deferring.caps[0]
    capped = verdict(deferring, action_type="webhook", tz_name=None, now=noon, successes=[(cap, 3)])
    assert capped.status == CAPPED
    allowed = verdict(
        deferring, action_type="webhook", tz_name=None, now=noon, successes=[(cap, 2)]
    )
    assert allowed.status == ALLOWED
