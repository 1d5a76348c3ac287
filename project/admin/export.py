"""CSV export of a changelist as it is filtered: a mixin for any ModelAdmin.

    class EventAdmin(CsvExportMixin, RecordAdmin, BigTableAdmin): ...

adds `<changelist>/export.csv` and an "Export CSV" button beside "Add" (templates/
admin/change_list.html) that carries the list's current filters and search. The rows
are those of the changelist's own queryset (its filters, search and permissions),
read in keyset chunks by primary key (`pk > last ORDER BY pk LIMIT n`) and streamed,
so memory stays flat at millions of rows and no statement holds a cursor open
between chunks (safe behind a transaction-pooling proxy, and on SQLite). The export
is ordered by primary key, not by the list's sort: on Herald's time-ordered ids that
is creation order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, Model, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

# Rows read per statement: large enough that a round trip is cheap per row, small
# enough that a chunk's rows are a few MB at most.
EXPORT_CHUNK = 2000
# Related models' fields that name a row better than its id, tried in this order.
NAMING_FIELDS = ("key", "external_id", "name")


class _Echo:
    """csv.writer writes each row to this and gets the text back to stream."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else value


def default_export_fields(model: type[Model]) -> list[str]:
    """Every concrete column by its attribute name, each foreign key followed by its
    target's naming field (`event_type__key`, `customer__external_id`) when it has one
    and the key is enforced (a key without a constraint points into a partitioned
    table, where a join per chunk would read every month)."""
    fields: list[str] = []
    for field in model._meta.concrete_fields:
        fields.append(field.attname)
        if isinstance(field, ForeignKey) and getattr(field, "db_constraint", True):
            target = field.related_model._meta
            names = {f.name for f in target.concrete_fields}
            naming = next((n for n in NAMING_FIELDS if n in names), None)
            if naming is not None:
                fields.append(f"{field.name}__{naming}")
    return fields


def rows_in_chunks(
    queryset: QuerySet[Any], fields: list[str], chunk: int = EXPORT_CHUNK
) -> Iterator[tuple[Any, ...]]:
    """The rows of `queryset` as tuples of `fields`, read `chunk` at a time by primary
    key; the primary key must be the first field."""
    ordered = queryset.order_by("pk")
    last = None
    while True:
        page = ordered if last is None else ordered.filter(pk__gt=last)
        rows = list(page.values_list(*fields)[:chunk])
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1][0]


def csv_lines(header: list[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_cell(v) for v in row])


class CsvExportMixin:
    """Adds a streamed CSV export of the filtered changelist to a ModelAdmin."""

    # Field paths to export; empty: default_export_fields(model). The first must be
    # the primary key (the keyset).
    export_fields: tuple[str, ...] = ()

    # Provided by ModelAdmin.
    model: type[Model]
    admin_site: Any

    def get_export_fields(self, request: HttpRequest) -> list[str]:
        fields = list(self.export_fields) or default_export_fields(self.model)
        pk = self.model._meta.pk
        assert pk is not None
        if fields[0] not in ("pk", pk.attname):
            fields.insert(0, pk.attname)
        return fields

    def _export_url_name(self) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_export"

    def get_urls(self) -> list[URLPattern]:
        urls: list[URLPattern] = super().get_urls()  # type: ignore[misc]
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),
            name=self._export_url_name(),
        )
        return [export, *urls]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        context["herald_export_url"] = reverse(f"admin:{self._export_url_name()}")
        return super().changelist_view(request, context)  # type: ignore[misc,no-any-return]

    def export_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The changelist's rows (its filters and search from the query string) as CSV."""
        if not self.has_view_or_change_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        fields = self.get_export_fields(request)
        response = StreamingHttpResponse(
            csv_lines(fields, rows_in_chunks(changelist.queryset, fields)),
            content_type="text/csv; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        name = f"{self.model._meta.model_name}-{stamp}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
