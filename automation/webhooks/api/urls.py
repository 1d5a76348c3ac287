from __future__ import annotations

from django.urls import path

from automation.webhooks.api import views

urlpatterns = [
    path("webhooks", views.WebhookCollectionView.as_view(), name="webhooks"),
    path("webhooks/<str:webhook_id>", views.WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<str:webhook_id>/rotate-secret",
        views.WebhookRotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path("webhooks/<str:webhook_id>/test", views.WebhookTestView.as_view(), name="webhook-test"),
    path("deliveries", views.DeliveryCollectionView.as_view(), name="deliveries"),
    path(
        "deliveries/<str:delivery_id>",
        views.DeliveryDetailView.as_view(),
        name="delivery-detail",
    ),
    path(
        "deliveries/<str:delivery_id>/redeliver",
        views.DeliveryRedeliverView.as_view(),
        name="delivery-redeliver",
    ),
]
