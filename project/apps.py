from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class HeraldAdminConfig(AdminConfig):
    """Stands in for django.contrib.admin in INSTALLED_APPS: `admin.site` is Herald's.

    Kept apart from project.admin.site, which imports models and so cannot be
    loaded while the app registry is being populated.
    """

    default_site = "project.admin.site.HeraldAdminSite"

    def ready(self) -> None:
        """Also: the request id lives as long as its request and travels in Celery
        messages, and a Celery worker keeps the log lines settings.LOGGING configured
        (project.requestid, project.logs), and the OpenAPI document's extensions are
        resolved before the first request (project.api.schema)."""
        super().ready()
        from celery import signals

        from project.api.schema import schema_extensions_load
        from project.logs import celery_keep_logging
        from project.requestid import signals_connect

        signals_connect()
        schema_extensions_load()
        signals.setup_logging.connect(
            celery_keep_logging, weak=False, dispatch_uid="herald-keep-logging"
        )
