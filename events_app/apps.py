from __future__ import annotations

from django.apps import AppConfig


class EventsAppConfig(AppConfig):
    name = "events_app"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Events"  # the admin's section title and breadcrumb

    def ready(self) -> None:
        from events_app.api.auth import rate_limit_counters_prune
        from project.background import periodic_job_register

        periodic_job_register(
            name="ratelimit.prune", interval_seconds=300.0, func=rate_limit_counters_prune
        )
