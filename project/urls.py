from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import include, path
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from project.api import API_ROOT
from project.metrics import metrics_view

API = API_ROOT


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """The front page (and the admin's "View site"): where the admin, the API docs and
    the examples are. Public: it shows links only."""
    api_base = request.build_absolute_uri(f"/{API}").rstrip("/")
    return render(request, "landing.html", {"api_base": api_base})


urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path(f"{API}schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        f"{API}docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"
    ),
    path(API, include("events_app.api.urls")),
    # Before customers.api.urls: its customers/<customer_id> would take "merge", "merges".
    path(API, include("customers.identity.api.urls")),
    path(API, include("customers.api.urls")),
    path(API, include("customers.privacy.api.urls")),
    path(API, include("automation.api.urls")),
    path(API, include("project.audit.api.urls")),
]

handler400 = "project.api.errors.handler400"
handler403 = "project.api.errors.handler403"
handler404 = "project.api.errors.handler404"
handler500 = "project.api.errors.handler500"
