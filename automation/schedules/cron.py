"""Cron expressions as cron-parser (the library seed 003 names) reads them.

Two parts, so that each does what it is good at:

1. A front end (this module) that reads an expression with cron-parser's
   grammar and rules and rejects, with a reason, what cron-parser rejects:
   5 fields, or 6 with a leading seconds field; `*`, `?`, ranges, steps,
   lists, JAN-DEC / SUN-SAT names, `L` (last day of month), `nL` (last
   weekday n of the month), `n#k` (k-th weekday n), the `@yearly` … `@weekends`
   aliases; duplicates, reversed ranges, a zero step and a day of month that no
   chosen month has (`0 0 31 2 *`) are errors. It produces a canonical
   expression with every restricted field expanded to a list.
2. cronsim (healthchecks.io's evaluator, well kept, with a leading seconds
   field and Debian's L / # extensions) iterates that canonical expression.
   Expanding restricted fields to lists makes cronsim's day-of-month /
   day-of-week rule ("AND if either field starts with `*`, else OR") the same
   as cron-parser's ("OR unless one of them is literally `*` or `?`"); cronsim
   alone would read `*/2` in the day of month as unrestricted.

Deliberate differences from cron-parser (tested, documented in docs/automation.md):
fewer than 5 fields (cron-parser pads them, so `5` silently means "every
minute on Fridays") and `H` (a random value chosen anew at every parse, so a
preview would not show what runs) are rejected.

Time zones: cronsim walks wall-clock time; `_instants` maps each wall-clock
match to real instants with the rule that neither skips nor doubles a run
(a time inside a spring-forward gap runs shifted by the gap, like cron-parser;
a time that occurs twice at fall-back runs once, at its first occurrence,
unless the hour field is `*`, when every real hour runs).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import Options, get_description
from cronsim import CronSim, CronSimError

__all__ = [
    "Cron",
    "CronError",
    "min_gap_seconds",
    "parse",
    "zone",
]


class CronError(ValueError):
    """The expression is not one cron-parser accepts (or one Herald refuses); says why."""


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int


FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12),
    _Field("day of week", 0, 7),
)
SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK = range(6)

MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
DAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# cron-parser's aliases (lowercase only, as cron-parser resolves them).
ALIASES = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
    "@minutely": "0 * * * * *",
    "@secondly": "* * * * * *",
    "@weekdays": "0 0 0 * * 1-5",
    "@weekends": "0 0 0 * * 0,6",
}
# Days in each month in the longest year (cron-parser's check for `0 0 31 2 *`).
LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"[A-Za-z]+")
# A DST transition moves local time by at most this much (Lord Howe: 30 min, most: 1 h).
_DST_WINDOW = timedelta(hours=3)


def _number(text: str, field: _Field, item: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise CronError(f"{field.name}: invalid value '{item}'.")
    value = int(text)
    if not field.lo <= value <= field.hi:
        raise CronError(f"{field.name}: {value} is out of range (allowed {field.lo}-{field.hi}).")
    return value


def _replace_names(raw: str, index: int) -> str:
    names = MONTH_NAMES if index == MONTH else DAY_NAMES

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        if word == "L":
            return word
        number = names.get(word.lower())
        if number is None:
            allowed = "JAN-DEC" if index == MONTH else "SUN-SAT"
            raise CronError(f"{FIELDS[index].name}: unknown name '{word}' (use {allowed}).")
        return str(number)

    return _WORD.sub(replace, raw)


def _expand_item(item: str, index: int) -> list[int]:
    field = FIELDS[index]
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if "/" in step_text:
            raise CronError(f"{field.name}: more than one step in '{item}'.")
        if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
            raise CronError(f"{field.name}: the step in '{item}' must be a whole number >= 1.")
        step = int(step_text)
    if base in ("*", "?"):
        # `*/n` in the day of week runs over 0-6 (7 would repeat Sunday).
        start, end = field.lo, (6 if index == DAY_OF_WEEK else field.hi)
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _number(first, field, item), _number(last, field, item)
        if start > end:
            raise CronError(f"{field.name}: reversed range '{base}' ({start} > {end}).")
    else:
        start = _number(base, field, item)
        end = field.hi if slash else start
    values = range(start, end + 1, step)
    if index == DAY_OF_WEEK:
        return sorted({value % 7 for value in values})
    return list(values)


def _parse_field(raw: str, index: int) -> tuple[str, bool]:
    """Return (canonical cronsim text, is the field literally `*`/`?`)."""
    field = FIELDS[index]
    if "H" in raw:
        raise CronError(
            f"{field.name}: 'H' (a random value) is not supported: a schedule's run times "
            "must be the same in the preview and in the scheduler."
        )
    if index in (MONTH, DAY_OF_WEEK):
        raw = _replace_names(raw, index)
    if raw in ("*", "?"):
        return "*", True
    items = raw.split(",")
    if any(item == "" for item in items):
        raise CronError(f"{field.name}: empty item in the list '{raw}'.")
    if index == DAY_OF_WEEK and "#" in raw and len(items) > 1:
        raise CronError(f"{field.name}: '#' cannot be combined with a list ('{raw}').")
    values: list[int] = []
    specials: list[str] = []
    for item in items:
        if index == DAY_OF_MONTH and item == "L":
            specials.append("L")
        elif index == DAY_OF_WEEK and item.endswith("L"):
            specials.append(f"{_number(item[:-1], field, item) % 7}L")
        elif index == DAY_OF_WEEK and "#" in item:
            day, _, nth = item.partition("#")
            if not _NUMBER.fullmatch(nth) or not 1 <= int(nth) <= 5:
                raise CronError(f"{field.name}: the '#' in '{item}' must be followed by 1-5.")
            if day in ("*", "?"):
                raise CronError(f"{field.name}: '#' needs one weekday, not '{day}'.")
            specials.append(f"{_number(day, field, item) % 7}#{int(nth)}")
        else:
            values.extend(_expand_item(item, index))
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise CronError(f"{field.name}: {duplicates[0]} appears twice in '{raw}'.")
    return ",".join([*map(str, sorted(values)), *specials]), False


def _check_reachable_day(dom: str, months: str) -> None:
    """cron-parser's rule: a day of month that none of the months has is an error."""
    if dom == "*" or "L" in dom:
        return
    month_numbers = range(1, 13) if months == "*" else [int(m) for m in months.split(",")]
    smallest_day = min(int(day) for day in dom.split(","))
    if smallest_day > max(LONGEST_MONTH[m - 1] for m in month_numbers):
        raise CronError(
            f"day of month: no chosen month has a day {smallest_day}; the schedule would never run."
        )


@dataclass(frozen=True)
class Cron:
    """A parsed expression: canonical 6-field form plus what the DST rule needs."""

    expression: str
    fields: tuple[str, ...]  # the six fields after aliases, before expansion
    canonical: str  # what cronsim iterates
    hour_is_wildcard: bool

    def _wall_times(self, start: datetime) -> Iterator[datetime]:
        try:
            yield from CronSim(self.canonical, start)
        except CronSimError as exc:  # cronsim gives up after ~50 years without a match
            raise CronError(f"The expression never matches: {exc}") from None

    def next_after(self, after: datetime, tz: tzinfo | None = None) -> datetime:
        """The first run strictly after `after` (aware), as an aware UTC datetime."""
        zone_ = tz or UTC
        local = after.astimezone(zone_)
        if zone_ is UTC:
            wall = next(self._wall_times(local.replace(tzinfo=None)))
            return wall.replace(tzinfo=UTC)
        # Near a transition, a wall time before `after`'s own may map to a later
        # instant (spring-forward gap, second pass of a repeated hour): look back.
        lookback = _DST_WINDOW if _transition_near(zone_, after) else timedelta(0)
        start = local.replace(tzinfo=None) - lookback
        best: datetime | None = None
        best_wall: datetime | None = None
        for wall in self._wall_times(start):
            if best_wall is not None and wall > best_wall + _DST_WINDOW:
                break
            for instant in _instants(wall, zone_, second_pass=self.hour_is_wildcard):
                if instant > after and (best is None or instant < best):
                    best, best_wall = instant, wall
            if best is not None and best_wall is not None and not _transition_near(zone_, best):
                break
        assert best is not None
        return best

    def upcoming(self, after: datetime, count: int, tz: tzinfo | None = None) -> list[datetime]:
        runs: list[datetime] = []
        for _ in range(count):
            after = self.next_after(after, tz)
            runs.append(after)
        return runs

    def describe(self) -> str:
        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        return get_description(" ".join(self.fields), options)


def _transition_near(tz: tzinfo, instant: datetime) -> bool:
    return (instant - _DST_WINDOW).astimezone(tz).utcoffset() != (instant + _DST_WINDOW).astimezone(
        tz
    ).utcoffset()


def _instants(wall: datetime, tz: tzinfo, *, second_pass: bool) -> list[datetime]:
    """The real instants at which a wall-clock match runs (the DST rule)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(tz).replace(tzinfo=None) != wall:
        # In a spring-forward gap: fold=0 reads it with the offset before the
        # jump, i.e. shifted forward by the gap (02:30 → 03:30), as cron-parser does.
        return [first]
    # Occurs twice (fall-back): once, unless the hour field is `*`.
    return [first, second] if second_pass else [first]


@lru_cache(maxsize=4096)
def parse(expression: str) -> Cron:
    """Parse and validate an expression; CronError says what is wrong."""
    if not isinstance(expression, str):
        raise CronError("The interval must be a string.")
    text = expression.strip()
    if text.startswith("@"):
        if text not in ALIASES:
            raise CronError(f"Unknown alias '{text}' (known: {', '.join(ALIASES)}).")
        text = ALIASES[text]
    parts = text.split()
    if len(parts) > 6:
        raise CronError(f"Too many fields ({len(parts)}); expected 5, or 6 with seconds first.")
    if len(parts) < 5:
        raise CronError(
            f"Expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a "
            f"leading seconds field; got {len(parts)}."
        )
    if len(parts) == 5:
        parts = ["0", *parts]
    parsed = [_parse_field(raw, index) for index, raw in enumerate(parts)]
    canonical = [text for text, _ in parsed]
    if parsed[DAY_OF_WEEK][1]:
        _check_reachable_day(canonical[DAY_OF_MONTH], canonical[MONTH])
    return Cron(
        expression=expression,
        fields=tuple(parts),
        canonical=" ".join(canonical),
        hour_is_wildcard=parsed[HOUR][1],
    )


def min_gap_seconds(cron: Cron, *, sample: int = 100) -> float:
    """The shortest gap between consecutive runs, from a sample of runs.

    A burst always starts at the first run after some instant, so the runs that
    follow the first one show the finest spacing the expression has.
    """
    anchor = datetime(2027, 1, 1, tzinfo=UTC)
    runs = cron.upcoming(anchor, sample)
    return min((b - a).total_seconds() for a, b in itertools.pairwise(runs))


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; CronError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"Unknown time zone '{name}' (use an IANA name like Europe/Prague)."
        ) from None
