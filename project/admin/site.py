"""The Herald admin site: branded, with a dashboard for marketers as its home page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from project.admin.dashboard import automation_figures, dashboard_figures


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
        if request.user.has_perm("events_app.view_event"):
            context["dashboard"] = dashboard_figures(now=now)
        # Webhook health and workflow runs, for staff who may see deliveries and runs.
        if request.user.has_perm("automation.view_delivery") and request.user.has_perm(
            "automation.view_workflowrun"
        ):
            context["automation"] = automation_figures(now=now)
        return super().index(request, context)
