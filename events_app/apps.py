from __future__ import annotations

from django.apps import AppConfig


class EventsAppConfig(AppConfig):
    name = "events_app"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Events"  # the admin's section title and breadcrumb
