"""Live events: an admin page that shows events as they arrive and batch items as they
are rejected, polling a small JSON feed (herald/live.js, once a second).

The feed answers what came after the page's cursors: events by (created_at, id)
through event_created_idx, within the last FEED_WINDOW (a page left open does not
make it scan further back), and rejected items by their id (rejecteditem_client_idx
when filtered by API client).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from events_app.models import ApiClient, Event, EventType, RejectedItem

FEED_WINDOW = timedelta(hours=1)
# Rows per answer and rows the page keeps.
FEED_ROWS = 50
PERMISSION = "events_app.view_event"


def _check(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def live_page(request: HttpRequest, *, context: dict[str, Any]) -> TemplateResponse:
    """The page: filters, two tables, the feed's address for the script."""
    _check(request)
    context = {
        **context,
        "title": "Live events",
        "api_clients": list(ApiClient.objects.order_by("name").values_list("pk", "name")),
        "event_types": list(EventType.objects.order_by("key").values_list("key", flat=True)),
        "feed_url": reverse("admin:herald_live_feed"),
        "poll_ms": 1000,
    }
    return TemplateResponse(request, "admin/herald_live.html", context)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def live_feed(request: HttpRequest) -> HttpResponse:
    """`{"events": [...], "rejections": [...], "cursor": {...}}`, newest first, after the
    cursors given (`events_after`: an event id, `rejections_after`: a rejected item's id),
    filtered by `api_client` (an id) and `event_type` (a key)."""
    _check(request)
    now = timezone.now()
    client = _int(request.GET.get("api_client"))
    event_type = request.GET.get("event_type", "")[:64]
    events_after = request.GET.get("events_after", "")[:26]
    rejections_after = _int(request.GET.get("rejections_after")) or 0

    events = Event.objects.filter(created_at__gte=now - FEED_WINDOW)
    if events_after:
        events = events.filter(pk__gt=events_after)
    if client is not None:
        events = events.filter(api_client_id=client)
    if event_type:
        events = events.filter(event_type__key=event_type)
    event_rows = list(
        events.select_related("event_type", "customer", "api_client").order_by(
            "-created_at", "-id"
        )[:FEED_ROWS]
    )

    rejected = RejectedItem.objects.filter(id__gt=rejections_after)
    if client is not None:
        rejected = rejected.filter(api_client_id=client)
    if event_type:
        rejected = rejected.filter(event_type=event_type)
    rejected_rows = list(rejected.select_related("api_client").order_by("-id")[:FEED_ROWS])
    if not rejections_after and not rejected_rows:
        latest = RejectedItem.objects.order_by("-id").values_list("id", flat=True)[:1]
        rejections_after = next(iter(latest), 0)

    return JsonResponse(
        {
            "events": [
                {
                    "id": e.id,
                    "url": reverse("admin:events_app_event_change", args=[e.id]),
                    "event_type": e.event_type.key,
                    "customer": str(e.customer),
                    "api_client": e.api_client.name if e.api_client else "",
                    "created_at": e.created_at.isoformat(),
                }
                for e in event_rows
            ],
            "rejections": [
                {
                    "id": r.id,
                    "api_client": r.api_client.name,
                    "position": r.position,
                    "event_type": r.event_type,
                    "error": r.error,
                    "sent": r.sent,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rejected_rows
            ],
            "cursor": {
                "events_after": event_rows[0].id if event_rows else events_after,
                "rejections_after": rejected_rows[0].id if rejected_rows else rejections_after,
            },
        }
    )
