"""Reads of scheduled callbacks: the seed-003 list filter, one schedule, its runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, F, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTransform

from automation.schedules.models import Schedule, ScheduleRun
from project.errors import NotFoundError

# API sort_field -> model field; every list ends with the primary key as tie-breaker.
SCHEDULE_SORT_FIELDS = {
    "created_date": "created_date",
    "next_run_at": "next_run_at",
    "end_date": "end_date",
    "schedule_id": "pk",
}
RUN_SORT_FIELDS = {"scheduled_for": "scheduled_for"}


@dataclass(frozen=True)
class ContextFilter:
    """Seed 003's ContextRequest: the value at `path` in the context (or in an array there)."""

    path: tuple[str, ...]
    value: str | int | float
    is_array: bool = False


def schedule_get(*, schedule_id: str) -> Schedule:
    try:
        return Schedule.objects.select_related("endpoint").get(pk=schedule_id)
    except Schedule.DoesNotExist:
        raise NotFoundError(f"Schedule '{schedule_id}' not found.") from None


def schedule_list(
    *,
    owners: Sequence[str] = (),
    tags: Sequence[str] = (),
    context: Sequence[ContextFilter] = (),
) -> QuerySet[Schedule]:
    """Schedules of any of `owners`, carrying all of `tags`, matching every context filter."""
    queryset = Schedule.objects.all()
    if owners:
        queryset = queryset.filter(owner__in=list(owners))
    if tags:
        queryset = _with_all_tags(queryset, list(dict.fromkeys(tags)))
    for index, item in enumerate(context):
        queryset = _with_context(queryset, item, f"_ctx{index}")
    return queryset


def _with_all_tags(queryset: QuerySet[Schedule], tags: list[str]) -> QuerySet[Schedule]:
    if connection.vendor == "postgresql":
        # tags @> '["a","b"]': served by the GIN index schedule_tags_gin.
        return queryset.filter(tags__contains=tags)
    # SQLite has no JSON containment: one EXISTS over json_each per tag.
    for tag in tags:
        queryset = queryset.filter(
            RawSQL(
                "EXISTS (SELECT 1 FROM json_each(automation_schedule.tags) WHERE value = %s)",
                [tag],
                output_field=BooleanField(),
            )
        )
    return queryset


def _key_path(path: Sequence[str]) -> Any:
    # KeyTransform, not "context__a__b" kwargs: a key named like a lookup ("contains")
    # or holding "__" must stay a key.
    expression: Any = F("context")
    for key in path:
        expression = KeyTransform(key, expression)
    return expression


def _sqlite_json_path(path: Sequence[str]) -> str:
    # As Django's KeyTransform writes it: digits index an array, anything else is a key.
    return "$" + "".join(
        f"[{key}]" if key.isascii() and key.isdigit() else f".{json.dumps(key)}" for key in path
    )


def _with_context(
    queryset: QuerySet[Schedule], item: ContextFilter, alias: str
) -> QuerySet[Schedule]:
    if not item.is_array:
        # JSON equality: a Number matches numerically (12345 == 12345.0), a String exactly.
        return queryset.alias(**{alias: _key_path(item.path)}).filter(**{alias: item.value})
    if connection.vendor == "postgresql":
        return queryset.alias(**{alias: _key_path(item.path)}).filter(
            **{f"{alias}__contains": [item.value]}
        )
    return queryset.filter(
        RawSQL(
            "EXISTS (SELECT 1 FROM json_each(automation_schedule.context, %s) "
            "WHERE value = %s AND type IN (%s, %s))",
            [
                _sqlite_json_path(item.path),
                item.value,
                *(("text", "text") if isinstance(item.value, str) else ("integer", "real")),
            ],
            output_field=BooleanField(),
        )
    )


def schedule_runs(*, schedule: Schedule) -> QuerySet[ScheduleRun]:
    return ScheduleRun.objects.filter(schedule=schedule).select_related("delivery")
