"""automation.schedules.cron against cron-parser's own answers (cron_vectors/vectors.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automation.schedules import cron

VECTORS = json.loads((Path(__file__).parent / "cron_vectors" / "vectors.json").read_text())

# Deliberate differences, each with its reason (docs/automation.md, "Scheduled callbacks").
REJECTED_ON_PURPOSE = {
    "": "cron-parser reads an empty expression as every minute",
    "5": "cron-parser pads missing fields, so '5' means every minute on Fridays",
    "5 4 3 2": "cron-parser pads missing fields from the left",
    "H * * * *": "H is a random value chosen anew at every parse",
    "0 0 * * ?#2": "'#' with a wildcard weekday has no single weekday",
}
# cron-parser skips the 02:00 run on Lord Howe's 30-minute spring-forward day and stops
# iterating on its fall-back day (it returns fewer than 5 runs); Herald's rule is tested below.
CRON_PARSER_DEFECTS = {"Australia/Lord_Howe"}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _start(case: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(case["start"].replace("Z", "+00:00"))


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['expression']!r}|{case['tz']}|{case['start']}"


COMPARED = [
    c
    for c in VECTORS["cases"]
    if c["expression"] not in REJECTED_ON_PURPOSE and c["tz"] not in CRON_PARSER_DEFECTS
]
ACCEPTED = [c for c in COMPARED if "error" not in c]
REJECTED = [c for c in COMPARED if "error" in c]


def test_vector_table_covers_dst_transitions_and_rejections() -> None:
    assert VECTORS["generator"].startswith("cron-parser ")
    assert sum(1 for c in ACCEPTED if c.get("dst")) >= 60
    assert len(REJECTED) >= 30
    assert len(ACCEPTED) >= 900


@pytest.mark.parametrize("case", ACCEPTED, ids=_case_id)
def test_next_runs_match_cron_parser(case: dict[str, Any]) -> None:
    parsed = cron.parse(case["expression"])
    runs = parsed.upcoming(_start(case), VECTORS["count"], ZoneInfo(case["tz"]))
    assert [_iso(r) for r in runs] == case["next"]


@pytest.mark.parametrize("case", REJECTED, ids=_case_id)
def test_expressions_cron_parser_rejects_are_rejected_with_a_reason(case: dict[str, Any]) -> None:
    with pytest.raises(cron.CronError) as excinfo:
        cron.parse(case["expression"])
    assert str(excinfo.value)


@pytest.mark.parametrize("expression", sorted(REJECTED_ON_PURPOSE))
def test_deliberate_differences_are_rejected(expression: str) -> None:
    with pytest.raises(cron.CronError):
        cron.parse(expression)


def test_seed_interval_is_every_second_on_the_first_of_the_month() -> None:
    parsed = cron.parse("* * * 1 * *")
    runs = parsed.upcoming(datetime(2026, 1, 31, 23, 59, 58, tzinfo=UTC), 4)
    assert [_iso(r) for r in runs] == [
        "2026-02-01T00:00:00.000Z",
        "2026-02-01T00:00:01.000Z",
        "2026-02-01T00:00:02.000Z",
        "2026-02-01T00:00:03.000Z",
    ]
    assert cron.min_gap_seconds(parsed) == 1


def test_spring_forward_runs_a_skipped_local_time_once_shifted_by_the_gap() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    runs = cron.parse("30 2 * * *").upcoming(
        datetime(2026, 3, 7, 12, tzinfo=UTC), 3, ZoneInfo("America/New_York")
    )
    assert [_iso(r) for r in runs] == [
        "2026-03-08T07:30:00.000Z",  # 03:30 EDT, the day of the jump
        "2026-03-09T06:30:00.000Z",
        "2026-03-10T06:30:00.000Z",
    ]


def test_fall_back_runs_a_repeated_local_time_once() -> None:
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    runs = cron.parse("30 1 * * *").upcoming(
        datetime(2026, 10, 31, 12, tzinfo=UTC), 2, ZoneInfo("America/New_York")
    )
    assert [_iso(r) for r in runs] == ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]


def test_fall_back_hourly_schedule_runs_every_real_hour() -> None:
    runs = cron.parse("0 * * * *").upcoming(
        datetime(2026, 11, 1, 4, 30, tzinfo=UTC), 3, ZoneInfo("America/New_York")
    )
    # 01:00 EDT, 01:00 EST, 02:00 EST: an hour apart each, none skipped or doubled.
    assert [_iso(r) for r in runs] == [
        "2026-11-01T05:00:00.000Z",
        "2026-11-01T06:00:00.000Z",
        "2026-11-01T07:00:00.000Z",
    ]


def test_lord_howe_half_hour_spring_forward_neither_skips_nor_doubles() -> None:
    # 2026-10-04 02:00 LHST (+10:30) jumps to 02:30 LHDT (+11): 02:00 runs at 02:30.
    runs = cron.parse("0 2 * * *").upcoming(
        datetime(2026, 10, 3, 12, tzinfo=UTC), 3, ZoneInfo("Australia/Lord_Howe")
    )
    assert [_iso(r) for r in runs] == [
        "2026-10-03T15:30:00.000Z",
        "2026-10-04T15:00:00.000Z",
        "2026-10-05T15:00:00.000Z",
    ]


def test_lord_howe_half_hour_fall_back_runs_repeated_time_once() -> None:
    # 2026-04-05 02:00 LHDT (+11) falls back to 01:30 LHST (+10:30): 01:45 happens twice.
    runs = cron.parse("45 1 * * *").upcoming(
        datetime(2026, 4, 4, 0, tzinfo=UTC), 3, ZoneInfo("Australia/Lord_Howe")
    )
    assert [_iso(r) for r in runs] == [
        "2026-04-04T14:45:00.000Z",  # 01:45 LHDT; its repeat at 15:15Z does not run
        "2026-04-05T15:15:00.000Z",
        "2026-04-06T15:15:00.000Z",
    ]


def test_a_tick_exactly_at_the_start_is_not_returned() -> None:
    start = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert cron.parse("*/5 * * * *").next_after(start) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)


def test_min_gap_sees_the_wrap_of_a_list() -> None:
    assert cron.min_gap_seconds(cron.parse("0,30,59 * * * *")) == 60


def test_description_is_human_readable() -> None:
    assert cron.parse("0 9 * * MON-FRI").describe() == "At 09:00, Monday through Friday"


def test_unknown_zone_is_rejected() -> None:
    with pytest.raises(cron.CronError, match="Unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")
