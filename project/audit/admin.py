"""The audit log in the admin: read-only, newest first."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from project.audit.models import AuditEntry


def _pretty(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_kind", "actor_name", "action", "object_type", "object_id")
    list_filter = ("action", "object_type", "actor_kind")
    # Exact matches only, so the object and actor indexes serve them.
    search_fields = ("=object_id", "=actor_id", "=actor_name", "=request_id")
    date_hierarchy = "at"
    show_full_result_count = False
    fields = (
        "at",
        "actor_kind",
        "actor_id",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "before_pretty",
        "after_pretty",
        "request_id",
    )
    readonly_fields = fields

    @admin.display(description="before")
    def before_pretty(self, entry: AuditEntry) -> str:
        return _pretty(entry.before)

    @admin.display(description="after")
    def after_pretty(self, entry: AuditEntry) -> str:
        return _pretty(entry.after)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
