"""The admin's delete flow for models deleted set-based (project.cascade).

Django's delete confirmation runs the Collector over the selected objects to
list every row the delete would take with them (every delivery of a webhook,
every run of a workflow, every event of a customer): the same full load a
set-based delete avoids, rendered as a page with a line per row. Here the page
lists the objects themselves and a capped count of each kind of row their
on_delete rules reach (read from the same model graph cascade_delete follows),
and the delete itself goes through the model's service.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from project.admin.lists import FILTERED_COUNT_CAP, capped_count
from project.cascade import cascade_blocking, cascade_rows

# What ModelAdmin.get_deleted_objects returns: the summary lines, counts per
# kind, the permissions missing and the lines of what protects the objects.
DeletionPreview = tuple[list[Any], dict[str, int], set[str], list[Any]]


def _counted(rows: QuerySet[Any]) -> tuple[int, str]:
    """The number of rows up to the cap, and how a page says it."""
    count, more = capped_count(rows, FILTERED_COUNT_CAP)
    return count, f"{'More than ' if more else ''}{count}"


def _counted_sets(sets: list[QuerySet[Any]]) -> str:
    """How a page says the number of rows of several sets (each counted up to the cap)."""
    counted = [capped_count(rows, FILTERED_COUNT_CAP) for rows in sets]
    total = sum(count for count, _ in counted)
    return f"{'More than ' if any(more for _, more in counted) else ''}{total}"


class CascadeDeleteAdmin(admin.ModelAdmin):
    """Delete through a set-based service; the confirmation page counts what goes.

    Subclasses implement delete_one (call the service). deleted_with names rows
    the service deletes besides the cascade of the objects (a schedule's
    endpoint); kept_with the rows the cascade would reach but the service keeps
    (a customer's deliveries, redacted): the page lists them apart, as kept (the
    template admin/herald_delete_kept.html); uncounted_models are bookkeeping rows
    not worth a line.
    """

    uncounted_models: tuple[type[Model], ...] = ()

    def delete_one(self, obj: Any) -> None:
        raise NotImplementedError

    def deleted_with(self, objects: QuerySet[Any]) -> list[QuerySet[Any]]:
        return []

    def kept_with(self, objects: QuerySet[Any]) -> dict[str, list[QuerySet[Any]]]:
        """Rows the cascade would reach but the service keeps (redacted, detached), by
        the line that names them: the page lists them as kept, not deleted."""
        return {}

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = dict(extra_context or {})
        if request.method != "POST":
            obj = self.get_object(request, object_id)
            if obj is not None:
                queryset = self.model._base_manager.filter(pk=obj.pk)
                extra_context["kept_objects"] = [
                    f"{_counted_sets(sets)} {label}"
                    for label, sets in self.kept_with(queryset).items()
                ]
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_one(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # QuerySet.delete() would run Django's row-by-row Collector.
        for obj in queryset:
            self.delete_one(obj)

    def _related(self, queryset: QuerySet[Any], kept: set[type[Model]]) -> dict[str, QuerySet[Any]]:
        """Plural name -> the rows the cascade of `queryset` deletes, but its own and
        those of the `kept` models."""
        return {
            str(model._meta.verbose_name_plural): rows
            for model, rows in cascade_rows(queryset).items()
            # Auto-created many-to-many links are not objects a marketer made.
            if model is not queryset.model
            and not model._meta.auto_created
            and model not in self.uncounted_models
            and model not in kept
        }

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> DeletionPreview:
        objects = list(objs)
        opts = self.opts
        queryset = self.model._base_manager.filter(pk__in=[obj.pk for obj in objects])
        kept = {rows.model for sets in self.kept_with(queryset).values() for rows in sets}
        related = self._related(queryset, kept)
        for also in self.deleted_with(queryset):
            related[str(also.model._meta.verbose_name_plural)] = also
            related.update(self._related(also, kept))
        summary: list[Any] = [
            format_html(
                '{}: <a href="{}">{}</a>',
                capfirst(str(opts.verbose_name)),
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
                str(obj),
            )
            for obj in objects
        ]
        counts = {str(opts.verbose_name_plural): len(objects)}
        for label, rows in related.items():
            counts[label], text = _counted(rows)
            summary.append(f"{text} {label}")
        protected = [
            f"{message} Referring {rows.model._meta.verbose_name_plural}: {_counted(rows)[1]}."
            for message, rows in cascade_blocking(queryset)
        ]
        perms_needed = set() if self.has_delete_permission(request) else {str(opts.verbose_name)}
        return summary, counts, perms_needed, protected
