from __future__ import annotations

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Privacy requests' task (enqueued by name), the merge records' part of a privacy
        request (customers.hooks), and periodic jobs (project.background)."""
        from customers.hooks import customer_erase_hook_register, customer_export_hook_register
        from customers.identity.privacy import customer_merges_erase, customer_merges_export
        from customers.identity.services import merges_prune
        from customers.privacy import tasks  # noqa: F401 - registers the task enqueued by name
        from customers.privacy.services import privacy_exports_expire, privacy_requests_sweep
        from project.background import periodic_job_register

        # Requests whose message was lost, and those of dead workers.
        periodic_job_register(
            name="privacy.sweep", interval_seconds=10.0, func=privacy_requests_sweep
        )
        # Export documents past HERALD_PRIVACY_EXPORT_DAYS.
        periodic_job_register(
            name="privacy.exports_expire", interval_seconds=3600.0, func=privacy_exports_expire
        )

        # Merge records past the undo window (HERALD_MERGE_UNDO_DAYS) are deleted.
        periodic_job_register(
            name="identity.merges_prune", interval_seconds=3600.0, func=merges_prune
        )
        customer_erase_hook_register("merges", customer_merges_erase)
        customer_export_hook_register("merges", customer_merges_export)
