from __future__ import annotations

from django.urls import path

from customers.identity.api import views

# Included before customers.api.urls, whose customers/<customer_id> would take these.
urlpatterns = [
    path("customers/identify", views.CustomerIdentifyView.as_view(), name="customers-identify"),
    path("customers/merge", views.CustomerMergeView.as_view(), name="customers-merge"),
    path("customers/merges", views.MergeCollectionView.as_view(), name="customers-merges"),
    path(
        "customers/merges/<str:merge_id>",
        views.MergeDetailView.as_view(),
        name="customers-merge-detail",
    ),
    path(
        "customers/merges/<str:merge_id>/undo",
        views.MergeUndoView.as_view(),
        name="customers-merge-undo",
    ),
]
