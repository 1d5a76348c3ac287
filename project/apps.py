from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class HeraldAdminConfig(AdminConfig):
    """Stands in for django.contrib.admin in INSTALLED_APPS: `admin.site` is Herald's.

    Kept apart from project.admin.site, which imports models and so cannot be
    loaded while the app registry is being populated.
    """

    default_site = "project.admin.site.HeraldAdminSite"
