"""List endpoints: count/offset/sort_field/sort_direction and the list envelope.

Seed 004 names the query parameters; every list endpoint answers through
`filtered_list`, so that limits, defaults, error messages and the total ordering
are the same everywhere. Ordering always ends with the primary key, so pages never repeat
or skip a row when the sort field has ties. Parameters a view does not declare
never get here: StrictAPIView rejects them (project/api/strict.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Model, QuerySet
from django_filters import FilterSet

from project.api.errors import ApiError
from project.datetimes import utc_datetime

MAX_COUNT = 1000
DEFAULT_COUNT = 100
# PostgreSQL's OFFSET is a bigint.
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True)
class ListParams:
    count: int
    offset: int
    sort_field: str
    descending: bool

    def order_by(self, sort_fields: Mapping[str, str]) -> list[str]:
        sign = "-" if self.descending else ""
        column = sort_fields[self.sort_field]
        ordering = [f"{sign}{column}"]
        if column != "pk":
            ordering.append(f"{sign}pk")
        return ordering


_INTEGER = re.compile(r"-?[0-9]+")


def _int_param(
    query: Mapping[str, str], name: str, default: int, lo: int, hi: int, *, show_hi: bool = True
) -> int:
    """An integer query parameter in [lo, hi].

    Plain ASCII digits only: Python's int() also takes "1_000", " 7" and other
    scripts' digits, which no client means. `hi` keeps the value inside
    PostgreSQL's bigint (OFFSET is one); `show_hi=False` leaves such a technical
    bound out of the message until it is crossed.
    """
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        shown = raw if len(raw) <= 40 else f"{raw[:40]}…"
        raise ApiError(
            f"Query parameter '{name}' must be an integer.",
            details={name: [f"'{shown}' is not an integer."]},
        )
    # Compared as text first: int() of thousands of digits is refused by Python itself.
    value = int(raw) if len(raw) <= 25 else (hi + 1 if raw[0] != "-" else lo - 1)
    if lo <= value <= hi:
        return value
    if show_hi:
        bound = f"between {lo} and {hi}"
    else:
        bound = f"at least {lo}" if value < lo else f"at most {hi}"
    shown = raw if len(raw) <= 40 else f"{raw[:40]}…"
    raise ApiError(
        f"Query parameter '{name}' must be {bound}.",
        details={name: [f"Must be {bound}; got {shown}."]},
    )


def parse_list_params(
    query: Mapping[str, str],
    *,
    sort_fields: Mapping[str, str],
    default_sort: str,
    default_descending: bool = True,
    count_param: str = "count",
) -> ListParams:
    """Validate the paging/sorting parameters."""
    count = _int_param(query, count_param, DEFAULT_COUNT, 1, MAX_COUNT)
    offset = _int_param(query, "offset", 0, 0, MAX_OFFSET, show_hi=False)
    sort_field = query.get("sort_field") or default_sort
    if sort_field not in sort_fields:
        raise ApiError(
            f"Unknown sort_field '{sort_field}'.",
            details={"sort_field": [f"One of: {', '.join(sorted(sort_fields))}."]},
        )
    direction = (query.get("sort_direction") or ("DESC" if default_descending else "ASC")).upper()
    if direction not in {"ASC", "DESC"}:
        raise ApiError(
            "sort_direction must be ASC or DESC.",
            details={"sort_direction": [f"'{query.get('sort_direction')}' is not ASC or DESC."]},
        )
    return ListParams(
        count=count, offset=offset, sort_field=sort_field, descending=direction == "DESC"
    )


def apply_filterset(
    filterset_class: type[FilterSet], query: Mapping[str, str], queryset: QuerySet[Any]
) -> QuerySet[Any]:
    """Run a django-filter FilterSet; invalid values become a 400 with details.

    Every datetime filter value goes through project.datetimes (converted to UTC,
    refused when PostgreSQL could not compare it), whatever filter class parsed it.
    """
    filterset = filterset_class(data=query, queryset=queryset)
    if filterset.is_valid():
        cleaned = filterset.form.cleaned_data
        refused: dict[str, str] = {}
        for name, value in cleaned.items():
            if isinstance(value, datetime):
                try:
                    cleaned[name] = utc_datetime(value)
                except ValueError as exc:
                    refused[name] = str(exc)
        for name, message in refused.items():
            filterset.form.add_error(name, message)
    if not filterset.is_valid():
        details = {name: [str(m) for m in messages] for name, messages in filterset.errors.items()}
        field, messages = next(iter(details.items()))
        raise ApiError(f"Invalid query parameter '{field}': {messages[0]}", details=details)
    return filterset.qs


def page_by_deferred_join(
    queryset: QuerySet[Any], params: ListParams, sort_fields: Mapping[str, str]
) -> list[Model]:
    """One page in the total order, found by its ids first (a "deferred join").

    `OFFSET n` reads and throws away n whole rows. Selecting only the primary
    keys lets PostgreSQL skip them inside an index that holds the sort key and
    the id (an index-only scan, no table reads), then only the `count` rows of
    the page are fetched (bench/list_events.py measures it).
    A row deleted between the two queries is left out of the page.
    """
    ordered = queryset.order_by(*params.order_by(sort_fields))
    ids = list(ordered.values_list("pk", flat=True)[params.offset : params.offset + params.count])
    if not ids:
        return []
    rows = {obj.pk: obj for obj in queryset.order_by().filter(pk__in=ids)}
    return [rows[pk] for pk in ids if pk in rows]


def list_envelope(
    *,
    key: str,
    queryset: QuerySet[Any],
    params: ListParams,
    sort_fields: Mapping[str, str],
    to_dict: Callable[[Any], dict[str, Any]],
    total: int | None = None,
    deferred_join: bool = False,
) -> dict[str, Any]:
    """`{"data": {key: [...], "total_items": N}}` for one page of a queryset.

    `to_dict`: pass one serializer's bound `to_representation`, not a lambda that
    builds a serializer per row (building one deep-copies its fields).
    `total`: an exact count computed by the caller (e.g. from counters a
    selector keeps), instead of `queryset.count()`. `deferred_join`: fetch the
    page through its ids (see page_by_deferred_join), for big tables whose
    sort keys have covering indexes.
    """
    page: Iterable[Model]
    if deferred_join:
        page = page_by_deferred_join(queryset, params, sort_fields)
    else:
        ordered = queryset.order_by(*params.order_by(sort_fields))
        page = ordered[params.offset : params.offset + params.count]
    items = [to_dict(obj) for obj in page]
    return {"data": {key: items, "total_items": queryset.count() if total is None else total}}


def filtered_list(
    query: Mapping[str, str],
    *,
    key: str,
    queryset: QuerySet[Any] | Callable[[], QuerySet[Any]],
    sort_fields: Mapping[str, str],
    default_sort: str,
    to_dict: Callable[[Any], dict[str, Any]],
    default_descending: bool = True,
    count_param: str = "count",
    filterset_class: type[FilterSet] | None = None,
    total: Callable[[QuerySet[Any]], int] | None = None,
    deferred_join: bool = False,
) -> dict[str, Any]:
    """The whole GET of a list endpoint: paging/sorting params, filters, the envelope.

    Every list endpoint answers through here. `queryset`: the rows to list, or a
    function building them from the view's own filter parameters (called after the
    paging parameters are checked, so their errors come first, as everywhere).
    `filterset_class`: a django-filter FilterSet run over it. `total`: an exact count
    of the filtered rows computed otherwise than `queryset.count()`. `deferred_join`:
    see list_envelope.
    """
    params = parse_list_params(
        query,
        sort_fields=sort_fields,
        default_sort=default_sort,
        default_descending=default_descending,
        count_param=count_param,
    )
    rows = queryset() if callable(queryset) else queryset
    if filterset_class is not None:
        rows = apply_filterset(filterset_class, query, rows)
    return list_envelope(
        key=key,
        queryset=rows,
        params=params,
        sort_fields=sort_fields,
        to_dict=to_dict,
        total=None if total is None else total(rows),
        deferred_join=deferred_join,
    )
