from __future__ import annotations

from django.urls import path

from automation.segments.api import views

urlpatterns = [
    path("segments", views.SegmentCollectionView.as_view(), name="segments"),
    # Before the detail route, which would take "preview" for an id.
    path("segments/preview", views.SegmentPreviewView.as_view(), name="segments-preview"),
    path("segments/<str:segment_id>", views.SegmentDetailView.as_view(), name="segment-detail"),
    path(
        "segments/<str:segment_id>/members",
        views.SegmentMembersView.as_view(),
        name="segment-members",
    ),
    path(
        "segments/<str:segment_id>/broadcast",
        views.SegmentBroadcastView.as_view(),
        name="segment-broadcast",
    ),
    path(
        "segments/<str:segment_id>/broadcasts/<str:broadcast_key>",
        views.SegmentBroadcastDetailView.as_view(),
        name="segment-broadcast-detail",
    ),
    path(
        "customers/<str:customer_id>/segments",
        views.CustomerSegmentsView.as_view(),
        name="customer-segments",
    ),
]
