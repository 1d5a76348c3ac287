"""Privacy requests in the admin: a read-only list of the audit records for operators,
and a form to file a request (which runs in the background like one filed by the API).
The identifier is shown only as its keyed hash; the form's value goes to the service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from customers.privacy.models import PrivacyRequest
from customers.privacy.services import privacy_request_create


class PrivacyRequestForm(forms.ModelForm):
    identifier = forms.CharField(
        max_length=254,
        help_text="The value of the identifier chosen above; kept only hashed once done.",
    )

    class Meta:
        model = PrivacyRequest
        fields = ("type", "identifier_kind")


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "type",
        "status",
        "identifier_kind",
        "digest_start",
        "actor_name",
        "created_at",
        "finished_at",
    )
    list_filter = ("type", "status")
    # Searched by the request id (primary key) only: the identifier is never in clear.
    search_fields = ("=id",)
    search_help_text = "A request's id."
    form = PrivacyRequestForm
    readonly_fields = (
        "id",
        "type",
        "status",
        "identifier_kind",
        "identifier_digest",
        "actor_kind",
        "actor_id",
        "actor_name",
        "counts",
        "error",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "export_expires_at",
    )

    @admin.display(description="identifier (hash)")
    def digest_start(self, obj: PrivacyRequest) -> str:
        return f"{obj.identifier_digest[:12]}…"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("type", "identifier_kind", "identifier") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        filed = privacy_request_create(
            type=form.cleaned_data["type"],
            identifier_kind=form.cleaned_data["identifier_kind"],
            value=form.cleaned_data["identifier"],
        )
        obj.pk, obj._state.adding, obj._state.db = filed.pk, False, filed._state.db

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
