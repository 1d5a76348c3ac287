"""Condition operators: the registry of handler classes and how they compare.

Operators are small handler classes in `REGISTRY`, keyed by name (house
style 6): adding one is adding a class and a test. Every handler validates its
expected value once, when a workflow is saved (automation.workflows.conditions.trees), and
compares at evaluation time (automation.workflows.engine) without ever raising: a value
that is missing or cannot be coerced to the comparison's type simply does not
match (except for exists / not_exists).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import re2

from automation.workflows.conditions.values import (
    MISSING,
    coerce_like,
    normalize,
    to_datetime,
)
from automation.workflows.durations import parse_duration

MAX_LIST = 1000
MAX_TEXT = 1000


# ---------------------------------------------------------------- operators


class Operator:
    """Base of an operator handler: validates its value, then compares.

    `check(value)` returns an error message or None (called when a workflow
    is saved). `prepare(value)` turns the validated value into what `test`
    needs (a compiled regex, a timedelta). `test(actual, prepared, now)`
    returns a bool and must never raise: the evaluator calls it on whatever
    the event carries.
    """

    name: ClassVar[str]
    takes_value: ClassVar[bool] = True
    # For the admin's rule builder (automation.workflows.conditions.schema): the words
    # it shows, the value types of subject it is offered for ("any" = untyped paths
    # such as attributes.x) and the shape of its value (scalar, pair, list, duration,
    # regex, none).
    label: ClassVar[str]
    types: ClassVar[frozenset[str]] = frozenset({"string", "number", "boolean", "datetime", "any"})
    shape: ClassVar[str] = "scalar"

    def check(self, value: Any) -> str | None:
        return _scalar_error(value)

    def prepare(self, value: Any) -> Any:
        return value

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        raise NotImplementedError


def _scalar_error(value: Any) -> str | None:
    if value is None or isinstance(value, list | dict):
        return "must be a string, number or boolean"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    return None


def _list_error(value: Any, *, exact: int | None = None) -> str | None:
    if not isinstance(value, list):
        return "must be a list"
    if exact is not None and len(value) != exact:
        return f"must be a list of exactly {exact} values"
    if not value:
        return "must not be empty"
    if len(value) > MAX_LIST:
        return f"must have at most {MAX_LIST} values"
    for item in value:
        if _scalar_error(item):
            return "must contain only strings, numbers or booleans"
    return None


def _values_of(actual: Any) -> list[Any]:
    """A list subject (tags) matches when any of its items does."""
    return actual if isinstance(actual, list) else [actual]


class _Compare(Operator):
    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        for item in _values_of(actual):
            expected = coerce_like(item, prepared)
            if expected is MISSING:
                continue
            try:
                if self.compare(normalize(item), normalize(expected)):
                    return True
            except TypeError:
                continue
        return False

    def compare(self, actual: Any, expected: Any) -> bool:
        raise NotImplementedError


class Eq(_Compare):
    name = "eq"
    label = "="

    def compare(self, actual: Any, expected: Any) -> bool:
        return bool(actual == expected)


class Ne(Operator):
    name = "ne"
    label = "≠"

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        # A missing value is not "different from x": missing values never match.
        if actual is MISSING or actual is None:
            return False
        return not Eq().test(actual, prepared, now)


class Gt(_Compare):
    name = "gt"
    label = ">"
    types = frozenset({"number", "datetime", "any"})

    def compare(self, actual: Any, expected: Any) -> bool:
        return bool(actual > expected)


class Gte(_Compare):
    name = "gte"
    label = "≥"
    types = frozenset({"number", "datetime", "any"})

    def compare(self, actual: Any, expected: Any) -> bool:
        return bool(actual >= expected)


class Lt(_Compare):
    name = "lt"
    label = "<"
    types = frozenset({"number", "datetime", "any"})

    def compare(self, actual: Any, expected: Any) -> bool:
        return bool(actual < expected)


class Lte(_Compare):
    name = "lte"
    label = "≤"
    types = frozenset({"number", "datetime", "any"})

    def compare(self, actual: Any, expected: Any) -> bool:
        return bool(actual <= expected)


class Between(Operator):
    """Inclusive range: `"value": [low, high]`."""

    name = "between"
    label = "between"
    types = frozenset({"number", "datetime", "any"})
    shape = "pair"

    def check(self, value: Any) -> str | None:
        return _list_error(value, exact=2)

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        for item in _values_of(actual):
            low, high = coerce_like(item, prepared[0]), coerce_like(item, prepared[1])
            if low is MISSING or high is MISSING:
                continue
            try:
                if normalize(low) <= normalize(item) <= normalize(high):
                    return True
            except TypeError:
                continue
        return False


class In(Operator):
    name = "in"
    label = "is one of"
    types = frozenset({"string", "number", "any"})
    shape = "list"

    def check(self, value: Any) -> str | None:
        return _list_error(value)

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        eq = Eq()
        return any(eq.test(actual, option, now) for option in prepared)


class NotIn(In):
    name = "not_in"
    label = "is none of"

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if actual is MISSING or actual is None:
            return False
        return not super().test(actual, prepared, now)


class Contains(Operator):
    """Substring of a string, item of a list (tags), or key of an object."""

    name = "contains"
    label = "contains"
    types = frozenset({"string", "list", "object", "any"})

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if isinstance(actual, str):
            expected = coerce_like(actual, prepared)
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return Eq().test(actual, prepared, now)
        if isinstance(actual, dict):
            return str(prepared) in actual
        return False


class StartsWith(Operator):
    name = "starts_with"
    label = "starts with"
    types = frozenset({"string", "any"})

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        return isinstance(actual, str) and actual.startswith(str(coerce_like(actual, prepared)))


class EndsWith(Operator):
    name = "ends_with"
    label = "ends with"
    types = frozenset({"string", "any"})

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        return isinstance(actual, str) and actual.endswith(str(coerce_like(actual, prepared)))


class Exists(Operator):
    name = "exists"
    label = "exists"
    types = frozenset({"string", "number", "boolean", "datetime", "list", "object", "any"})
    shape = "none"
    takes_value = False

    def check(self, value: Any) -> str | None:
        return None

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        return actual is not MISSING and actual is not None


class NotExists(Exists):
    name = "not_exists"
    label = "does not exist"

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        return not super().test(actual, prepared, now)


class Matches(Operator):
    """A regular expression searched in the value's text, run by RE2.

    RE2 runs in time linear in the input (no backtracking), so a pattern such
    as `(a+)+$` cannot hang a worker on a hostile value.
    """

    name = "matches"
    label = "matches"
    types = frozenset({"string", "any"})
    shape = "regex"
    OPTIONS = re2.Options()
    OPTIONS.max_mem = 8 << 20
    OPTIONS.log_errors = False

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a regular expression string"
        if len(value) > MAX_TEXT:
            return f"must be at most {MAX_TEXT} characters"
        try:
            re2.compile(value, self.OPTIONS)
        except re2.error as exc:
            return f"is not a valid RE2 regular expression: {exc}"
        return None

    def prepare(self, value: Any) -> Any:
        return re2.compile(value, self.OPTIONS)

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        if actual is MISSING or actual is None or isinstance(actual, dict | list):
            return False
        text = actual.isoformat() if isinstance(actual, datetime) else str(actual)
        if isinstance(actual, bool):
            text = "true" if actual else "false"
        return prepared.search(text) is not None


class WithinLast(Operator):
    """The datetime lies in [now - duration, now]."""

    name = "within_last"
    label = "within the last"
    types = frozenset({"datetime", "any"})
    shape = "duration"

    def check(self, value: Any) -> str | None:
        try:
            parse_duration(value)
        except ValueError as exc:
            return str(exc)
        return None

    def prepare(self, value: Any) -> Any:
        return parse_duration(value)

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        moment = to_datetime(actual)
        return moment is not MISSING and now - prepared <= moment <= now


class MoreThanAgo(WithinLast):
    """The datetime lies strictly before now - duration."""

    name = "more_than_ago"
    label = "more than … ago:"

    def test(self, actual: Any, prepared: Any, now: datetime) -> bool:
        moment = to_datetime(actual)
        return moment is not MISSING and moment < now - prepared


REGISTRY: dict[str, Operator] = {
    op.name: op
    for op in (
        Eq(),
        Ne(),
        Gt(),
        Gte(),
        Lt(),
        Lte(),
        Between(),
        In(),
        NotIn(),
        Contains(),
        StartsWith(),
        EndsWith(),
        Exists(),
        NotExists(),
        Matches(),
        WithinLast(),
        MoreThanAgo(),
    )
}
NUMERIC_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in"})
