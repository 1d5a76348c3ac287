"""GET /schedules filter: seed 003's JSON `query` parameter, or flat `owner` / `tags`."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter

from automation.schedules.api.serializers import ScheduleQueryIn
from automation.schedules.selectors import ContextFilter
from project.api.body import decode_json
from project.api.errors import ApiError

FILTER_PARAMETERS = [
    OpenApiParameter(
        "query",
        str,
        description='JSON: {"owner": [emails, any of], "tags": [all of], "context": '
        '[{"path": ["user"], "value": "12345", "type": "Number", "isArray": false}]}',
        allow_blank=False,
    ),
    OpenApiParameter(
        "owner", str, description="Owner email(s), comma-separated: any of.", allow_blank=False
    ),
    OpenApiParameter("tags", str, description="Tags, comma-separated: all of.", allow_blank=False),
]


def _split(query: QueryDict, name: str) -> list[str]:
    """Repeated or comma-separated values of a flat parameter."""
    return [part.strip() for raw in query.getlist(name) for part in raw.split(",") if part.strip()]


def _number(raw: str | int | float, index: int) -> int | float:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ApiError(
            f"Invalid query parameter 'query': context[{index}].value '{raw}' is not a number.",
            details={f"query.context[{index}].value": [f"'{raw}' is not a number."]},
        ) from None
    if not value.is_finite():
        raise ApiError(
            f"Invalid query parameter 'query': context[{index}].value must be finite.",
            details={f"query.context[{index}].value": ["Must be a finite number."]},
        )
    return int(value) if value == value.to_integral_value() else float(value)


def parse_schedule_filter(query: QueryDict) -> dict[str, Any]:
    """Keyword arguments for schedule_selectors.schedule_list."""
    owners = _split(query, "owner")
    tags = _split(query, "tags")
    context: list[ContextFilter] = []
    raw = query.get("query")
    if raw:
        try:
            parsed = decode_json(raw.encode(), ScheduleQueryIn)
        except ApiError as exc:
            raise ApiError(
                f"Invalid query parameter 'query': {exc.message}",
                details={f"query.{k}": v for k, v in (exc.details or {}).items()},
            ) from None
        owners += parsed.owner
        tags += parsed.tags
        for index, item in enumerate(parsed.context):
            value = _number(item.value, index) if item.type == "Number" else str(item.value)
            context.append(
                ContextFilter(
                    path=tuple(item.path), value=value, is_array=item.isArray or item.is_array
                )
            )
    return {"owners": owners, "tags": tags, "context": context}
