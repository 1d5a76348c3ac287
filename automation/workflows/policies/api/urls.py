from __future__ import annotations

from django.urls import path

from automation.workflows.policies.api import views

urlpatterns = [
    path(
        "delivery-policies",
        views.DeliveryPolicyCollectionView.as_view(),
        name="delivery-policies",
    ),
    path(
        "delivery-policies/<str:policy_id>",
        views.DeliveryPolicyDetailView.as_view(),
        name="delivery-policy-detail",
    ),
]
