"""A JSON object edited as rows of key, type and value: what a marketer edits
customer attributes with instead of a JSON textarea.

Each row is three inputs named `<field>-key-<n>`, `<field>-type-<n>` and
`<field>-value-<n>`; a row whose key is empty is dropped (that is how a row is
removed). The page offers a few empty rows, and herald/keyvalue.js adds more on
demand (without JavaScript, save and the page comes back with fresh empty rows).
Types are those of JSON: text, number, true / false, and JSON itself for lists,
nested objects and null, so every value an integration stored survives a save.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.template.loader import render_to_string
from django.utils.datastructures import MultiValueDict
from django.utils.safestring import mark_safe

TYPES = (("text", "text"), ("number", "number"), ("boolean", "true / false"), ("json", "JSON"))
EMPTY_ROWS = 2
# More rows than any page offers: a form with more is not from the admin.
MAX_ROWS = 1000
INTEGER = re.compile(r"-?\d+")

Row = tuple[str, str, str]  # key, type, value as typed


def _row_of(key: str, value: Any) -> Row:
    """How a stored value is shown: its type and its text."""
    if isinstance(value, bool):
        return key, "boolean", "true" if value else "false"
    if isinstance(value, int | float):
        return key, "number", json.dumps(value)
    if isinstance(value, str):
        return key, "text", value
    return key, "json", json.dumps(value, ensure_ascii=False, sort_keys=True)


class KeyValueWidget(forms.Widget):
    # In the project's templates/ (settings.TEMPLATES), which the default form
    # renderer does not search: _render uses the template loader instead.
    template_name = "admin/herald/keyvalue_widget.html"

    class Media:
        js = ("herald/keyvalue.js",)

    def rows(self, value: Any) -> list[Row]:
        if isinstance(value, list):  # the rows as posted, shown again with their errors
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = {}
        if not isinstance(value, Mapping):
            return []
        # Sorted: PostgreSQL's jsonb keeps no insertion order to show instead.
        return [_row_of(str(key), item) for key, item in sorted(value.items())]

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        rows = [*self.rows(value), *[("", "text", "")] * EMPTY_ROWS]
        context["widget"]["rows"] = [
            {"index": index, "key": key, "type": kind, "value": text}
            for index, (key, kind, text) in enumerate(rows)
        ]
        context["widget"]["types"] = TYPES
        return context

    def _render(self, template_name: str, context: dict[str, Any], renderer: Any = None) -> str:
        return mark_safe(render_to_string(template_name, context))  # noqa: S308 - a template

    def value_from_datadict(
        self, data: Mapping[str, Any] | MultiValueDict[str, Any], files: Any, name: str
    ) -> list[Row] | None:
        if self.value_omitted_from_data(data, files, name):
            return None  # not on the form: leave the value as it is
        rows: list[Row] = []
        for index in range(MAX_ROWS):
            key = data.get(f"{name}-key-{index}")
            if key is None:
                break
            kind = data.get(f"{name}-type-{index}") or "text"
            rows.append((str(key), str(kind), str(data.get(f"{name}-value-{index}") or "")))
        return rows

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return f"{name}-key-0" not in data


def _parse(key: str, kind: str, text: str) -> Any:
    if kind == "text":
        return text
    if kind == "number":
        text = text.strip()
        if INTEGER.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise forms.ValidationError(f"“{key}”: “{text}” is not a number.")
        return number
    if kind == "boolean":
        word = text.strip().lower()
        if word not in {"true", "false"}:
            raise forms.ValidationError(f"“{key}”: true / false takes “true” or “false”.")
        return word == "true"
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise forms.ValidationError(f"“{key}”: “{text}” is not valid JSON.") from None
    raise forms.ValidationError(f"“{key}”: unknown type “{kind}”.")


class KeyValueField(forms.Field):
    """A JSON object as key / type / value rows (KeyValueWidget); cleans to a dict."""

    widget = KeyValueWidget

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return dict(value)
        result: dict[str, Any] = {}
        errors: list[forms.ValidationError] = []
        for key, kind, text in value or []:
            key = key.strip()
            if not key:
                continue
            if "\x00" in key or "\x00" in text:
                errors.append(forms.ValidationError(f"“{key}”: NUL characters are not allowed."))
                continue
            if key in result:
                errors.append(forms.ValidationError(f"“{key}” appears twice."))
                continue
            try:
                result[key] = _parse(key, kind, text)
            except forms.ValidationError as error:
                errors.append(error)
        if errors:
            raise forms.ValidationError(errors)
        return result

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def has_changed(self, initial: Any, data: Any) -> bool:
        if data is None:
            return False
        try:
            return (initial or {}) != self.to_python(data)
        except forms.ValidationError:
            return True
