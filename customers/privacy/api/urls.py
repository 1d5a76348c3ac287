from __future__ import annotations

from django.urls import path

from customers.privacy.api import views

urlpatterns = [
    path(
        "privacy-requests",
        views.PrivacyRequestCollectionView.as_view(),
        name="privacy-requests",
    ),
    path(
        "privacy-requests/<str:privacy_request_id>",
        views.PrivacyRequestDetailView.as_view(),
        name="privacy-request-detail",
    ),
    path(
        "privacy-requests/<str:privacy_request_id>/export",
        views.PrivacyExportView.as_view(),
        name="privacy-request-export",
    ),
]
