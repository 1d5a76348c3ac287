"""Admin changelist pieces that stay fast on tables with millions of rows.

Django's changelist counts every row it could show (`SELECT COUNT(*)`), twice
when filtered (once more for the "N total" figure), and its facets count every
filter option. On PostgreSQL a COUNT(*) over a million events reads the whole
table. Here the unfiltered count comes from the planner's estimate
(`pg_class.reltuples`), a filtered count stops at a cap, and the pagination
template says "about" / "more than" when a figure is not exact.
"""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from math import ceil
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Field, Model, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from project.ids import public_id_floor

# Below this many rows an exact COUNT(*) is cheap, and exact figures avoid an
# estimate that lags behind a freshly filled table.
EXACT_COUNT_BELOW = 10_000
# A filtered changelist counts at most this many rows (then says "more than"),
# and no list pages further than this: OFFSET n still reads (and joins) the n
# rows it skips, so page 20,000 of a million events takes seconds. Past this
# point a marketer filters or searches instead.
FILTERED_COUNT_CAP = 10_000


def table_row_estimate(model: type[Model], using: str = "default") -> int | None:
    """The planner's row estimate for the model's table, or None when there is none.

    PostgreSQL keeps `reltuples` up to date on ANALYZE / autovacuum; it is -1
    for a table never analyzed. A partitioned table's own figure is not kept
    (autovacuum analyzes its partitions only): its partitions' are summed. Other
    databases (the embedded SQLite) have no such figure and are small enough to count.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT coalesce((
                SELECT sum(greatest(p.reltuples, 0)) FROM pg_inherits i
                JOIN pg_class p ON p.oid = i.inhrelid
                WHERE i.inhparent = c.oid AND c.relkind = 'p'
                HAVING max(p.reltuples) >= 0
            ), c.reltuples)::bigint
            FROM pg_class c WHERE c.oid = %s::regclass""",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] < 0:
        return None
    return int(row[0])


def capped_count(queryset: QuerySet[Any], cap: int) -> tuple[int, bool]:
    """Count at most `cap` rows: (count, True) when there are more than `cap`.

    `queryset[:cap + 1].count()` is `SELECT COUNT(*) FROM (… LIMIT cap+1)`, so
    the database stops reading after cap+1 matching rows.
    """
    count = queryset.order_by()[: cap + 1].count()
    if count > cap:
        return cap, True
    return count, False


class EstimatedCountPaginator(Paginator):
    """A paginator whose count never scans a big table.

    Unfiltered: the planner estimate (exact below EXACT_COUNT_BELOW rows).
    Filtered: an exact count up to FILTERED_COUNT_CAP, then the cap.
    `count_kind` tells the pagination template how to word the figure.
    """

    exact_count_below = EXACT_COUNT_BELOW
    filtered_count_cap = FILTERED_COUNT_CAP
    count_kind = "exact"  # "exact" | "estimate" | "at_least"

    @cached_property
    def num_pages(self) -> int:  # type: ignore[override]
        # Django's page count (admin changelists allow an empty first page)...
        pages = ceil(max(1, self.count - self.orphans) / self.per_page)
        # ...but no page starts past the cap.
        return min(pages, max(ceil(self.filtered_count_cap / self.per_page), 1))

    @property
    def is_truncated(self) -> bool:
        """True when rows exist beyond the last page offered."""
        return self.count > self.num_pages * self.per_page

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        if not queryset.query.where:
            estimate = table_row_estimate(queryset.model, queryset.db)
            if estimate is not None and estimate >= self.exact_count_below:
                self.count_kind = "estimate"
                return estimate
            return queryset.count()
        count, capped = capped_count(queryset, self.filtered_count_cap)
        if capped:
            self.count_kind = "at_least"
        return count


class CreatedWithinFilter(admin.SimpleListFilter):
    """Recent rows by `created_at`: an index range scan, unlike date_hierarchy.

    date_hierarchy runs `SELECT DISTINCT date(created_at)` over the whole table
    to draw its links; these fixed windows cost nothing to draw and filter with
    `created_at >= now - window`, which the (created_at, id) indexes serve.
    """

    title = "created"
    parameter_name = "created"
    field_name = "created_at"
    WINDOWS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(hours=24)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        since = timezone.now() - window[1]
        return queryset.filter(**{f"{self.field_name}__gte": since})


def other_params(request: HttpRequest, *own: str) -> list[tuple[str, str]]:
    """The list's query parameters but `own` and the page's position: what a filter's
    own <form> carries along as hidden inputs, so submitting it keeps the other filters."""
    skip = {*own, PAGE_VAR, AFTER_VAR}
    return [(key, str(value)) for key, value in request.GET.items() if key not in skip]


class CreatedBetweenFilter(admin.ListFilter):
    """`?created_from=YYYY-MM-DD&created_to=YYYY-MM-DD` (either may be left out; days in
    the admin's time zone, both included): a range on created_at, which the
    (created_at, id) indexes serve and which PostgreSQL prunes to the months it spans."""

    title = "created between"
    field_name = "created_at"
    parameter_from = "created_from"
    parameter_to = "created_to"
    template = "admin/herald/date_range_filter.html"

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.dates: dict[str, date] = {}
        for name in (self.parameter_from, self.parameter_to):
            if name not in params:
                continue
            value = params.pop(name)
            text = value[-1] if isinstance(value, list) else value
            self.used_parameters[name] = text
            try:
                self.dates[name] = date.fromisoformat(str(text))
            except ValueError:
                continue  # not a date: shown back in the box, not applied
        self.other_params = other_params(request, self.parameter_from, self.parameter_to)
        self.text_from = str(self.used_parameters.get(self.parameter_from, ""))
        self.text_to = str(self.used_parameters.get(self.parameter_to, ""))

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_from, self.parameter_to]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": not self.dates,
            "query_string": changelist.get_query_string(remove=self.expected_parameters()),
            "display": "Any time",
        }

    def _start(self, day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        start = self.dates.get(self.parameter_from)
        end = self.dates.get(self.parameter_to)
        if start is not None:
            queryset = queryset.filter(**{f"{self.field_name}__gte": self._start(start)})
        if end is not None and end < date.max:
            end_moment = self._start(end + timedelta(days=1))
            queryset = queryset.filter(**{f"{self.field_name}__lt": end_moment})
        return queryset


class CreatedWithinByIdFilter(CreatedWithinFilter):
    """The same windows for tables keyed by time-ordered public ids (project.ids).

    `id >= public_id_floor(now - window)` is a range scan on the primary key, so
    a table needs no created_at index for "the last 24 hours".
    """

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(pk__gte=public_id_floor(timezone.now() - window[1]))


class ParameterFilter(admin.SimpleListFilter):
    """`?<parameter_name>=<id>` from a link elsewhere in the admin; never lists the choices.

    A related-field filter would draw every row of the other table (100k
    endpoints, schedules or customers) in the sidebar; this one offers only the
    value in use, labelled by `label()`, so the sidebar says what the list shows.
    """

    field_name = ""

    def label(self, value: str) -> str:
        return value

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, self.label(value))] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field_name: value}) if value else queryset


class IndexedSortChangeList(ChangeList):
    """Honours `?o=` only for columns in sortable_by.

    Django hides the sort links of other columns but still obeys a typed-in
    `?o=`; sorting a million events by event type is a full-table sort.
    """

    def get_ordering_field(self, field_name: Any) -> Any:
        sortable_by = self.model_admin.sortable_by
        if sortable_by is not None and field_name not in sortable_by:
            return None
        return super().get_ordering_field(field_name)


# The query parameter of a keyset page: the sort values of the row before it.
AFTER_VAR = "after"


def keyset_encode(values: list[str]) -> str:
    return urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def keyset_decode(token: str, count: int) -> list[str] | None:
    """The values of a cursor made by keyset_encode, or None for anything else."""
    try:
        values = json.loads(urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(values, list) and len(values) == count):
        return None
    if not all(isinstance(value, str) and "\x00" not in value for value in values):
        return None
    return values


def keyset_after(ordering: list[tuple[Field[Any, Any], bool]], values: list[Any]) -> Q:
    """Rows after `values` in `ordering` ((field, descending) pairs, the last one unique).

    The expanded row comparison `(a < x) OR (a = x AND b < y) …` plus the
    redundant bound `a <= x`: that bound is what lets the index on (a, b) start
    its scan at the cursor instead of reading (and dropping) every row before it.
    """
    condition = Q()
    equal = Q()
    for (field, descending), value in zip(ordering, values, strict=True):
        condition |= equal & Q(**{f"{field.attname}__{'lt' if descending else 'gt'}": value})
        equal &= Q(**{field.attname: value})
    first, descending = ordering[0]
    bound = Q(**{f"{first.attname}__{'lte' if descending else 'gte'}": values[0]})
    return bound & condition


def _cursor_value(field: Field[Any, Any], text: str) -> Any:
    """`text` as a value of `field`, or None when it cannot be one (hand-made cursors)."""
    try:
        value = field.to_python(text)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return None
            value = value.astimezone(UTC)
    except (ValidationError, ValueError, OverflowError):
        return None
    return value


class KeysetChangeList(IndexedSortChangeList):
    """A changelist that pages to any depth: numbered pages as far as the count
    cap, and from any page a "next" link that starts the following page after its
    last row (`?after=`), which costs the same at row ten million as at row fifty.

    Keyset paging needs an ordering by columns that are never NULL and end with a
    unique one (Django appends the primary key for that); any other ordering keeps
    the numbered pages only.
    """

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.after_token = request.GET.get(AFTER_VAR, "")
        self.next_url: str | None = None
        super().__init__(request, *args, **kwargs)

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(AFTER_VAR, None)
        return lookup_params

    def get_query_string(self, new_params: Any = None, remove: Any = None) -> str:
        # Every link of the page (filters, sorting, page numbers) starts from the top.
        return super().get_query_string(new_params, [*(remove or []), AFTER_VAR])

    def keyset_ordering(self) -> list[tuple[Field[Any, Any], bool]] | None:
        ordering: list[tuple[Field[Any, Any], bool]] = []
        for item in self.queryset.query.order_by:
            if not isinstance(item, str):
                return None
            name = item.lstrip("-")
            try:
                field = self.opts.pk if name == "pk" else self.opts.get_field(name)
            except FieldDoesNotExist:
                return None
            if not isinstance(field, Field) or field.null or field.is_relation:
                return None
            ordering.append((field, item.startswith("-")))
        if not ordering or not (ordering[-1][0].primary_key or ordering[-1][0].unique):
            return None
        return ordering

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        if exclude_parameters is not None:  # a facet's count, not the page
            return queryset
        self.after: list[Any] | None = None
        if not self.after_token:
            return queryset
        self.queryset = queryset
        ordering = self.keyset_ordering()
        values = keyset_decode(self.after_token, len(ordering)) if ordering else None
        if ordering is None or values is None:
            return queryset
        pairs = zip(ordering, values, strict=True)
        after = [_cursor_value(field, value) for (field, _), value in pairs]
        if any(value is None for value in after):
            return queryset  # a cursor this page never made: start from the top
        self.after = after
        return queryset.filter(keyset_after(ordering, after))

    def get_results(self, request: HttpRequest) -> None:
        if self.after is not None:
            self.page_num = 1
        super().get_results(request)
        rows = list(self.result_list)
        self.result_list = rows  # type: ignore[assignment]
        ordering = self.keyset_ordering()
        more = self.paginator.count > (self.page_num * self.list_per_page)
        if ordering and rows and more and not self.show_all:
            last = rows[-1]
            values = [field.value_to_string(last) for field, _ in ordering]
            self.next_url = self.get_query_string({AFTER_VAR: keyset_encode(values)})


class BigTableAdmin(admin.ModelAdmin):
    """ModelAdmin defaults for a table that may hold millions of rows."""

    paginator = EstimatedCountPaginator
    # The "(N total)" figure next to the search box is a second full COUNT(*).
    show_full_result_count = False
    # Facets count every option of every filter over the filtered rows.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # True: the list page leaves out the admin's navigation sidebar, so that a list with
    # many columns and its filters fit a 1280 px window (the breadcrumbs still lead home).
    wide_changelist = False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        if self.wide_changelist:
            extra_context = {**(extra_context or {}), "is_nav_sidebar_enabled": False}
        return super().changelist_view(request, extra_context)

    # Subclasses set sortable_by to the columns an index can sort; the
    # changelist then refuses every other sort, and pages past the numbered ones
    # by keyset (KeysetChangeList).
    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return KeysetChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return self.search_indexed(request, queryset, term), False

    def search_indexed(
        self, request: HttpRequest, queryset: QuerySet[Any], term: str
    ) -> QuerySet[Any]:
        """The rows `term` finds through indexes; exact matches unless overridden
        (customers and events search by prefix, served by their own indexes)."""
        return self.search_exact(queryset, term)

    def search_exact(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        """Rows whose indexed columns equal `term` exactly (override per model).

        Django's `=field` search is `UPPER(col) = UPPER(term)` (iexact), which
        no plain btree index serves on PostgreSQL; equality does.
        """
        raise NotImplementedError

    # "Select all N" + delete would load every row into memory; no bulk delete.
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
