"""The Herald admin site: branded, with a dashboard for marketers as its home page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone

from project.admin.dashboard import automation_figures, dashboard_figures
from project.admin.live import live_feed, live_page
from project.admin.trends import DEFAULT_RANGE, RANGES, trends


class HeraldAdminSite(admin.AdminSite):
    site_header = "Herald"
    site_title = "Herald"
    index_title = "Dashboard"
    index_template = "admin/herald_index.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = dict(extra_context or {})
        # The figures are about events; staff without access to them get the
        # plain app list.
        now = timezone.now()
        # Webhook health and workflow runs, for staff who may see deliveries and runs.
        automation = request.user.has_perm("automation.view_delivery") and request.user.has_perm(
            "automation.view_workflowrun"
        )
        if request.user.has_perm("events_app.view_event"):
            context["dashboard"] = dashboard_figures(now=now)
            drawn = trends(
                now=now,
                range_name=request.GET.get("trend", DEFAULT_RANGE),
                automation=automation,
            )
            context.update(trends=drawn, trends_json=drawn.as_json(), trend_ranges=list(RANGES))
        if automation:
            context["automation"] = automation_figures(now=now)
        return super().index(request, context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("live/", self.admin_view(self._live_page), name="herald_live"),
            path("live/feed/", self.admin_view(live_feed), name="herald_live_feed"),
            *super().get_urls(),
        ]

    def _live_page(self, request: HttpRequest) -> HttpResponse:
        return live_page(request, context=self.each_context(request))
