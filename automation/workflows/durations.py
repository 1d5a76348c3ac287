"""ISO 8601 durations as workflows write them: count windows, `within_last` /
`more_than_ago` values, wait actions and per-customer re-entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import isodate


def parse_duration(text: Any) -> timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes or seconds.

    Months and years are refused: their length depends on the calendar, and a
    rule such as "within the last P1M" would silently mean 28 to 31 days.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("must be an ISO 8601 duration string such as 'P7D' or 'PT2H'")
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError):
        raise ValueError(f"'{text}' is not an ISO 8601 duration (e.g. 'P7D', 'PT2H')") from None
    except OverflowError:
        raise ValueError(f"'{text}' is longer than any date range") from None
    if not isinstance(parsed, timedelta):
        raise ValueError(f"'{text}': use weeks, days, hours, minutes or seconds, not months/years")
    if parsed <= timedelta(0):
        raise ValueError(f"'{text}' must be a positive duration")
    return parsed
