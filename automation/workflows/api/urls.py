from __future__ import annotations

from django.urls import path

from automation.workflows.api import views

urlpatterns = [
    path("workflows", views.WorkflowCollectionView.as_view(), name="workflows"),
    path("workflows/<str:workflow_id>", views.WorkflowDetailView.as_view(), name="workflow-detail"),
    path(
        "workflows/<str:workflow_id>/activate",
        views.WorkflowActivateView.as_view(),
        name="workflow-activate",
    ),
    path(
        "workflows/<str:workflow_id>/deactivate",
        views.WorkflowDeactivateView.as_view(),
        name="workflow-deactivate",
    ),
    path(
        "workflows/<str:workflow_id>/reveal-secrets",
        views.WorkflowRevealSecretsView.as_view(),
        name="workflow-reveal-secrets",
    ),
    path(
        "workflows/<str:workflow_id>/rotate-secrets",
        views.WorkflowRotateSecretsView.as_view(),
        name="workflow-rotate-secrets",
    ),
    path(
        "workflows/<str:workflow_id>/runs", views.WorkflowRunsView.as_view(), name="workflow-runs"
    ),
    path(
        "workflows/<str:workflow_id>/stats",
        views.WorkflowStatsView.as_view(),
        name="workflow-stats",
    ),
    path(
        "workflows/<str:workflow_id>/test", views.WorkflowTestView.as_view(), name="workflow-test"
    ),
]
