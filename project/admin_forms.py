"""Glue between the admin's add/change flow and the services that do the writing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Model


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
