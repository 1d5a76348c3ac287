"""Glue between the admin's add/change flow and the services that do the writing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse


def adopt_row(form_instance: Model, created: Model) -> None:
    """Make the admin form's unsaved instance stand for the row a service created.

    After save_model the admin logs the addition and redirects using the form's
    instance; when a service (not form.save()) created the row, copy it over.
    """
    for field in created._meta.concrete_fields:
        setattr(form_instance, field.attname, getattr(created, field.attname))
    form_instance._state.adding = False
    form_instance._state.db = created._state.db


def changed_fields(form: forms.BaseForm) -> dict[str, Any]:
    """The edited fields and their new values: what an `<noun>_update` service takes."""
    return {name: form.cleaned_data[name] for name in form.changed_data}


class WithoutSaveButtons(admin.ModelAdmin):
    """A change page whose fields are all read-only: no Save buttons that would save nothing."""

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)


class RecordAdmin(admin.ModelAdmin):
    """A record the system writes (an ingested event, a run): viewable, never added,
    edited or deleted one by one in the admin; it goes with what owns it."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
