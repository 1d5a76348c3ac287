from __future__ import annotations

from django.urls import path

from events_app.api import event_types, views

urlpatterns = [
    path("events", views.EventCollectionView.as_view(), name="events"),
    path("events/batch", views.EventBatchView.as_view(), name="events-batch"),
    path("events/<str:event_id>", views.EventDetailView.as_view(), name="event-detail"),
    path(
        "events/<str:event_id>/property-records",
        views.EventPropertyRecordsView.as_view(),
        name="event-property-records",
    ),
    path(
        "customers/<str:customer_id>/events",
        views.CustomerEventsView.as_view(),
        name="customer-events",
    ),
    path("event-types", event_types.EventTypeCollectionView.as_view(), name="event-types"),
    path(
        "event-types/<str:event_type_id>",
        event_types.EventTypeDetailView.as_view(),
        name="event-type-detail",
    ),
]
