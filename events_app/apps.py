from __future__ import annotations

from django.apps import AppConfig


class EventsAppConfig(AppConfig):
    name = "events_app"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Events"  # the admin's section title and breadcrumb

    def ready(self) -> None:
        from customers.hooks import customer_erase_hook_register, customer_export_hook_register
        from customers.timeline import timeline_source_register
        from events_app.activity import hour_counts_fold
        from events_app.api.auth import rate_limit_counters_prune
        from events_app.partitions.maintenance import partitions_maintain, retention_setting
        from events_app.privacy import customer_events_erase, customer_events_export
        from events_app.timeline import EVENT_SOURCE, customer_event_entries
        from project.background import periodic_job_register

        # A customer's events on their story in the admin (customers.timeline).
        timeline_source_register(EVENT_SOURCE, customer_event_entries)
        # A customer's events (with their property records) in privacy exports.
        customer_export_hook_register("events", customer_events_export)
        # Their property records (a month partition at a time) and events, before the
        # delete's cascade; after the hooks of the layers above, so that any of them
        # may still read the person's events.
        customer_erase_hook_register("events", customer_events_erase, order=1)

        periodic_job_register(
            name="ratelimit.prune", interval_seconds=300.0, func=rate_limit_counters_prune
        )
        # Month partitions ahead and retention (PostgreSQL; a no-op on SQLite).
        periodic_job_register(
            name="events.partitions", interval_seconds=3600.0, func=partitions_maintain
        )
        # The dashboard's hourly event counters: past hours' slots into one row each.
        periodic_job_register(
            name="events.hour_counts_fold", interval_seconds=900.0, func=hour_counts_fold
        )
        retention_setting()  # a bad HERALD_EVENT_RETENTION fails at start, not at night
