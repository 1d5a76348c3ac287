from __future__ import annotations

from django.urls import path

from customers.api import views

urlpatterns = [
    path("customers", views.CustomerCollectionView.as_view(), name="customers"),
    path("customers/<str:customer_id>", views.CustomerDetailView.as_view(), name="customer-detail"),
]
