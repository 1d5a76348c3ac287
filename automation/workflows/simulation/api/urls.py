from __future__ import annotations

from django.urls import path

from automation.workflows.simulation.api import views

# Before the workflow routes: "simulate" and "simulations" are not workflow ids.
urlpatterns = [
    path("workflows/simulate", views.SimulateView.as_view(), name="workflows-simulate"),
    path(
        "workflows/simulations/<str:simulation_id>",
        views.SimulationDetailView.as_view(),
        name="workflows-simulation-detail",
    ),
    path(
        "workflows/<str:workflow_id>/backfill",
        views.BackfillView.as_view(),
        name="workflow-backfill",
    ),
    path(
        "workflows/<str:workflow_id>/backfills/<str:backfill_id>",
        views.BackfillDetailView.as_view(),
        name="workflow-backfill-detail",
    ),
]
