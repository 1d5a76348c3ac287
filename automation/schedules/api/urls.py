from __future__ import annotations

from django.urls import path

from automation.schedules.api import views

urlpatterns = [
    path("schedules", views.ScheduleCollectionView.as_view(), name="schedules"),
    # Before schedules/<id>, so "preview" is not read as an id.
    path("schedules/preview", views.SchedulePreviewView.as_view(), name="schedule-preview"),
    path("schedules/<str:schedule_id>", views.ScheduleDetailView.as_view(), name="schedule-detail"),
    path(
        "schedules/<str:schedule_id>/pause",
        views.SchedulePauseView.as_view(),
        name="schedule-pause",
    ),
    path(
        "schedules/<str:schedule_id>/resume",
        views.ScheduleResumeView.as_view(),
        name="schedule-resume",
    ),
    path(
        "schedules/<str:schedule_id>/runs", views.ScheduleRunsView.as_view(), name="schedule-runs"
    ),
]
