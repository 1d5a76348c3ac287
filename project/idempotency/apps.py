from __future__ import annotations

from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    name = "project.idempotency"
    label = "idempotency"
    verbose_name = "Idempotency keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from project.background import periodic_job_register
        from project.idempotency.services import idempotency_keys_expire

        periodic_job_register(
            name="idempotency.expire", interval_seconds=3600.0, func=idempotency_keys_expire
        )
