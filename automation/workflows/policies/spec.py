"""The pure part of a delivery policy: its shape, its validation, and its verdicts.

No database and no clock here: the runner (services), the workflow test endpoint and
simulations call these with the counts they read and the time they choose, so all
three give the same answer for the same inputs.

A policy as stored and as the API writes it::

    {"key": "default",
     "caps": [{"count": 3, "window": "P7D", "actions": ["webhook"]}],
     "quiet_hours": {"start": "21:00", "end": "08:00",
                     "timezone_attribute": "timezone", "default_timezone": "Europe/Prague"},
     "on_blocked": "skip" | "defer"}

Semantics (docs/automation.md, "Delivery policies"):

* A cap allows at most `count` actions of the listed types per customer in any
  rolling `window`, across every workflow under the policy. A capped action is
  never deferred: it is recorded as `capped` and the run goes on.
* Quiet hours are a daily window of wall-clock time in the customer's time zone
  (an IANA name in the customer's attribute `timezone_attribute`, else
  `default_timezone`), from `start` (inclusive) to `end` (exclusive); `start > end`
  crosses midnight. Inside it an action is `skipped` (on_blocked "skip") or
  `deferred` to the window's end (on_blocked "defer").
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from automation.workflows.durations import parse_duration

__all__ = [
    "ALLOWED",
    "CAPPED",
    "DEFERRED",
    "ON_BLOCKED",
    "SKIPPED",
    "Cap",
    "PolicySpec",
    "QuietHours",
    "Verdict",
    "cap_block_reason",
    "policy_errors",
    "policy_spec_of",
    "quiet_hours_until",
    "verdict",
    "zone_of",
]

MAX_CAPS = 20
MAX_CAP_COUNT = 10_000
MAX_WINDOW = timedelta(days=365)
MAX_ATTRIBUTE_LENGTH = 100
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CLOCK_PATTERN = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
ON_BLOCKED = ("skip", "defer")

# A verdict's status; the blocked ones are also WorkflowRun outcome statuses.
ALLOWED = "allowed"
CAPPED = "capped"
SKIPPED = "skipped"
DEFERRED = "deferred"


@dataclass(frozen=True)
class Cap:
    """At most `count` actions of the types `actions` per customer in any rolling `window`."""

    count: int
    window: timedelta
    actions: tuple[str, ...]


@dataclass(frozen=True)
class QuietHours:
    """A daily window [start, end) of wall-clock time in the customer's time zone."""

    start: time
    end: time
    timezone_attribute: str
    default_timezone: str

    def crosses_midnight(self) -> bool:
        return self.start > self.end


@dataclass(frozen=True)
class PolicySpec:
    key: str
    caps: tuple[Cap, ...]
    quiet_hours: QuietHours | None
    on_blocked: str  # "skip" | "defer"

    def caps_for(self, action_type: str) -> tuple[Cap, ...]:
        """The caps that count (and limit) actions of `action_type`."""
        return tuple(cap for cap in self.caps if action_type in cap.actions)


@dataclass(frozen=True)
class Verdict:
    """What the policy does with one action now: `status` is ALLOWED or an outcome status
    (CAPPED, SKIPPED, DEFERRED); `reason` a sentence for a person (None when allowed);
    `resume_at` the instant a deferred action runs."""

    status: str
    reason: str | None = None
    resume_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.status == ALLOWED


# ---------------------------------------------------------------- time zones


@functools.cache
def _zone_names() -> frozenset[str]:
    # Membership in the installed database, not ZoneInfo(name): a key is a path, and a
    # name from a customer's attributes must never reach the file system unchecked.
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def zone_of(name: Any) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone called `name`, or None if `name` is not one."""
    if not isinstance(name, str) or name not in _zone_names():
        return None
    return zoneinfo.ZoneInfo(name)


# ---------------------------------------------------------------- parsing and validation


def _clock(text: str) -> time:
    match = CLOCK_PATTERN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return time(int(match[1]), int(match[2]))


def _cap_errors(
    data: Any, path: str, action_types: Collection[str], errors: dict[str, list[str]]
) -> None:
    if not isinstance(data, dict):
        errors.setdefault(path, []).append('Must be {"count", "window", "actions"}.')
        return
    unknown = sorted(set(data) - {"count", "window", "actions"})
    if unknown:
        errors.setdefault(path, []).append(f"Unknown key(s): {', '.join(unknown)}.")
    count = data.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CAP_COUNT:
        errors.setdefault(f"{path}.count", []).append(
            f"Must be an integer from 1 to {MAX_CAP_COUNT}."
        )
    try:
        window = parse_duration(data.get("window"))
    except ValueError as exc:
        errors.setdefault(f"{path}.window", []).append(f"Duration {exc}.")
    else:
        if window > MAX_WINDOW:
            errors.setdefault(f"{path}.window", []).append("Must be at most one year (P365D).")
    actions = data.get("actions")
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) for a in actions)
        or len(set(actions)) != len(actions)
    ):
        errors.setdefault(f"{path}.actions", []).append(
            "Must be a non-empty list of distinct action types."
        )
    else:
        unknown_types = [a for a in actions if a not in action_types]
        if unknown_types:
            errors.setdefault(f"{path}.actions", []).append(
                f"Unknown action type(s) {', '.join(map(repr, unknown_types))}; "
                f"one of: {', '.join(sorted(action_types))}."
            )


def _quiet_errors(data: Any, path: str, errors: dict[str, list[str]]) -> None:
    if not isinstance(data, dict):
        errors.setdefault(path, []).append(
            'Must be {"start", "end", "timezone_attribute", "default_timezone"} or null.'
        )
        return
    allowed = {"start", "end", "timezone_attribute", "default_timezone"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        errors.setdefault(path, []).append(f"Unknown key(s): {', '.join(unknown)}.")
    clocks: list[time] = []
    for name in ("start", "end"):
        value = data.get(name)
        try:
            if not isinstance(value, str):
                raise ValueError("required")
            clocks.append(_clock(value))
        except ValueError:
            errors.setdefault(f"{path}.{name}", []).append('Must be a time "HH:MM" (00:00-23:59).')
    if len(clocks) == 2 and clocks[0] == clocks[1]:
        errors.setdefault(f"{path}.end", []).append(
            "Must differ from start (a window from a time to itself is empty or all day)."
        )
    attribute = data.get("timezone_attribute")
    if (
        not isinstance(attribute, str)
        or not attribute
        or len(attribute) > MAX_ATTRIBUTE_LENGTH
        or "\x00" in attribute
    ):
        errors.setdefault(f"{path}.timezone_attribute", []).append(
            f"Must be a customer attribute name (1-{MAX_ATTRIBUTE_LENGTH} characters)."
        )
    if zone_of(data.get("default_timezone")) is None:
        errors.setdefault(f"{path}.default_timezone", []).append(
            "Must be an IANA time zone name such as Europe/Prague."
        )


def policy_errors(data: Any, *, action_types: Collection[str]) -> dict[str, list[str]]:
    """{path: [messages]} for a whole policy (empty when valid); `action_types`: the
    known action types (the action registry's keys)."""
    if not isinstance(data, dict):
        return {"": ["Must be an object."]}
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - {"key", "caps", "quiet_hours", "on_blocked"})
    if unknown:
        errors.setdefault("", []).append(f"Unknown key(s): {', '.join(unknown)}.")
    key = data.get("key")
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        errors.setdefault("key", []).append("Must be 1-64 letters, digits, underscores or hyphens.")
    caps = data.get("caps", [])
    if not isinstance(caps, list) or len(caps) > MAX_CAPS:
        errors.setdefault("caps", []).append(f"Must be a list of at most {MAX_CAPS} caps.")
    else:
        for index, cap in enumerate(caps):
            _cap_errors(cap, f"caps[{index}]", action_types, errors)
    quiet = data.get("quiet_hours")
    if quiet is not None:
        _quiet_errors(quiet, "quiet_hours", errors)
    if data.get("on_blocked", "skip") not in ON_BLOCKED:
        errors.setdefault("on_blocked", []).append('Must be "skip" or "defer".')
    return errors


def policy_spec_of(data: dict[str, Any]) -> PolicySpec:
    """The PolicySpec of a valid policy dict (see policy_errors); ValueError if invalid."""
    caps = tuple(
        Cap(
            count=int(cap["count"]),
            window=parse_duration(cap["window"]),
            actions=tuple(cap["actions"]),
        )
        for cap in data.get("caps") or []
    )
    quiet = data.get("quiet_hours")
    quiet_hours = None
    if quiet:
        quiet_hours = QuietHours(
            start=_clock(quiet["start"]),
            end=_clock(quiet["end"]),
            timezone_attribute=quiet["timezone_attribute"],
            default_timezone=quiet["default_timezone"],
        )
        if quiet_hours.start == quiet_hours.end:
            raise ValueError("quiet hours: start == end")
        if zone_of(quiet_hours.default_timezone) is None:
            raise ValueError(f"unknown time zone {quiet_hours.default_timezone!r}")
    on_blocked = data.get("on_blocked", "skip")
    if on_blocked not in ON_BLOCKED:
        raise ValueError(f"on_blocked {on_blocked!r}")
    return PolicySpec(
        key=str(data.get("key", "")), caps=caps, quiet_hours=quiet_hours, on_blocked=on_blocked
    )


# ---------------------------------------------------------------- caps


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("" if n == 1 else "s")
    return f"{seconds} seconds"


def cap_block_reason(cap: Cap, successes_in_window: int) -> str | None:
    """Why `cap` blocks one more action when `successes_in_window` actions of its types
    succeeded for the customer in its window; None if it allows it."""
    if successes_in_window < cap.count:
        return None
    kinds = " or ".join(cap.actions)
    return (
        f"capped: {successes_in_window} of {cap.count} {kinds} actions "
        f"in the last {_window_text(cap.window)}"
    )


# ---------------------------------------------------------------- quiet hours


def _wall_to_utc(day: date, clock: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant the wall clock in `zone` shows `day clock`: the first of two on a
    fall-back night; on a spring-forward night, a time that does not exist gives the
    first instant after the gap (the time the clocks jumped to)."""
    first = datetime.combine(day, clock, tzinfo=zone)  # fold=0: the earlier offset
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == first.replace(tzinfo=None):
        return utc
    # In a gap: fold=1 resolves with the later offset, which lands before the jump.
    low = first.replace(fold=1).astimezone(UTC)
    high = utc
    if low > high:
        low, high = high, low
    before = low.astimezone(zone).utcoffset()
    # The jump lies in (low, high]; find it to the second.
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def quiet_hours_until(spec: PolicySpec, tz_name: str | None, now: datetime) -> datetime | None:
    """The end of the quiet window (aware, in the zone used) if `now` is inside it, else
    None. `tz_name`: the customer's time zone attribute; if it is not an IANA name the
    policy's default zone is used."""
    quiet = spec.quiet_hours
    if quiet is None:
        return None
    zone = zone_of(tz_name) or zone_of(quiet.default_timezone)
    if zone is None:  # an invalid stored default: policy_spec_of refuses it
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    today = local.date()
    if quiet.crosses_midnight():
        if clock >= quiet.start:
            end_day = today + timedelta(days=1)
        elif clock < quiet.end:
            end_day = today
        else:
            return None
    elif quiet.start <= clock < quiet.end:
        end_day = today
    else:
        return None
    return _wall_to_utc(end_day, quiet.end, zone).astimezone(zone)


def _zone_note(spec: PolicySpec, tz_name: Any) -> str:
    quiet = spec.quiet_hours
    assert quiet is not None
    if zone_of(tz_name) is not None:
        return str(tz_name)
    if tz_name is None:
        return quiet.default_timezone
    shown = tz_name if isinstance(tz_name, str) else type(tz_name).__name__
    return (
        f"{quiet.default_timezone}; the customer's {quiet.timezone_attribute} "
        f"{str(shown)[:100]!r} is not an IANA time zone"
    )


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# ---------------------------------------------------------------- the verdict


def verdict(
    spec: PolicySpec,
    *,
    action_type: str,
    tz_name: Any,
    now: datetime,
    successes: Iterable[tuple[Cap, int]] = (),
) -> Verdict:
    """What the policy does with an action of `action_type` now for a customer whose
    time-zone attribute is `tz_name` (any JSON value; None when absent).

    Quiet hours first (a deferred action takes nothing from a cap); then every cap
    that lists the type, given as (cap, successes in its window) in `successes`.
    """
    zone_name = tz_name if isinstance(tz_name, str) else None
    until = quiet_hours_until(spec, zone_name, now)
    if until is not None:
        note = _zone_note(spec, tz_name)
        if spec.on_blocked == "defer":
            return Verdict(
                DEFERRED, f"deferred to {_timestamp(until)} (quiet hours, {note})", until
            )
        return Verdict(SKIPPED, f"skipped: quiet hours until {_timestamp(until)} ({note})")
    for cap, count in successes:
        reason = cap_block_reason(cap, count)
        if reason is not None:
            return Verdict(CAPPED, reason)
    return Verdict(ALLOWED)
