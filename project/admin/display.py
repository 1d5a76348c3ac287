"""JSON that a marketer can read in the admin (indented, sorted keys, monospace), and
links to related rows.

Styled by class from herald/admin.css: the Content-Security-Policy refuses style="".
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString


def pretty_json(value: Any) -> SafeString:
    """A read-only <pre> block with the value indented (escaped by format_html)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return format_html('<pre class="herald-json">{}</pre>', text)


def change_link(url_name: str, pk: object) -> SafeString:
    """A link to the admin page `url_name` of the row `pk`, labelled with its id; a dash
    when there is no row (a nullable reference)."""
    if pk is None:
        return format_html("{}", "—")
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[pk]), pk)


class PrettyJSONFormField(forms.JSONField):
    """Django's JSON form field, but the textarea shows indented JSON."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "herald-json-input"}),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=self.encoder)
