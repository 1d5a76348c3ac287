from __future__ import annotations

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from customers.identity.services import merges_prune
        from project.background import periodic_job_register

        # Merge records past the undo window (HERALD_MERGE_UNDO_DAYS) are deleted.
        periodic_job_register(
            name="identity.merges_prune", interval_seconds=3600.0, func=merges_prune
        )
