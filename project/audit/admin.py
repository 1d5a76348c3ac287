"""The audit log in the admin: read-only, newest first."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from project.admin.lists import BigTableAdmin, CreatedWithinFilter
from project.audit.models import AuditEntry


def _pretty(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


class AtWithinFilter(CreatedWithinFilter):
    title = "when"
    parameter_name = "at"
    field_name = "at"


@admin.register(AuditEntry)
class AuditEntryAdmin(BigTableAdmin):
    list_display = ("at", "actor_kind", "actor_name", "action", "object_type", "object_id")
    list_filter = (AtWithinFilter, "action", "object_type", "actor_kind")
    sortable_by = ("at",)
    # Searched by equality (search_exact), which the object and actor indexes serve.
    search_fields = ("object_id", "actor_id", "actor_name")
    search_help_text = "An object's id, or an API client's or admin user's id or name."
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

    def search_exact(self, queryset: QuerySet[AuditEntry], term: str) -> QuerySet[AuditEntry]:
        return queryset.filter(Q(object_id=term) | Q(actor_id=term) | Q(actor_name=term))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
