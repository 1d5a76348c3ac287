"""Admin for delivery policies: caps and quiet hours as typed inputs, saved through the
same services as the API (a policy the API refuses is refused here, at its field)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from automation.workflows.policies.models import DeliveryPolicy, PolicyCounter, PolicyUsage
from automation.workflows.policies.services import (
    delivery_policy_create,
    delivery_policy_delete,
    delivery_policy_update,
    delivery_policy_validate,
)
from project.admin.deletion import CascadeDeleteAdmin

CAPS_HELP = (
    'One cap per line of the list: {"count": 3, "window": "P7D", "actions": ["webhook"]} '
    "allows at most 3 webhook actions per customer in any 7 days (ISO 8601 window)."
)
QUIET_FIELDS = ("quiet_start", "quiet_end", "timezone_attribute", "default_timezone")


class DeliveryPolicyForm(forms.ModelForm):
    caps = forms.JSONField(required=False, help_text=CAPS_HELP)
    quiet_start = forms.CharField(
        required=False, max_length=5, label="Quiet from", help_text="HH:MM, e.g. 21:00."
    )
    quiet_end = forms.CharField(
        required=False,
        max_length=5,
        label="Quiet until",
        help_text="HH:MM, e.g. 08:00 (earlier than the start: the window crosses midnight).",
    )
    timezone_attribute = forms.CharField(
        required=False,
        max_length=100,
        help_text="The customer attribute holding their IANA time zone, e.g. timezone.",
    )
    default_timezone = forms.CharField(
        required=False,
        max_length=100,
        help_text="Used when the customer has none (or an invalid one), e.g. Europe/Prague.",
    )

    class Meta:
        model = DeliveryPolicy
        fields = ["key", "caps", "on_blocked"]

    FIELD_OF_PATH = {
        "key": "key",
        "caps": "caps",
        "on_blocked": "on_blocked",
        "quiet_hours.start": "quiet_start",
        "quiet_hours.end": "quiet_end",
        "quiet_hours.timezone_attribute": "timezone_attribute",
        "quiet_hours.default_timezone": "default_timezone",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet = self.instance.quiet_hours or {}
        for name, key in zip(QUIET_FIELDS, ("start", "end", *QUIET_FIELDS[2:]), strict=True):
            self.fields[name].initial = quiet.get(key, "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        given = [cleaned.get(name) or "" for name in QUIET_FIELDS]
        quiet = (
            None
            if not any(given)
            else dict(zip(("start", "end", *QUIET_FIELDS[2:]), given, strict=True))
        )
        data = {
            "key": cleaned.get("key"),
            "caps": cleaned.get("caps") or [],
            "quiet_hours": quiet,
            "on_blocked": cleaned.get("on_blocked") or DeliveryPolicy.OnBlocked.SKIP,
        }
        for path, messages in delivery_policy_validate(data).items():
            head = path.split("[", 1)[0]
            field = self.FIELD_OF_PATH.get(path) or self.FIELD_OF_PATH.get(head)
            for message in messages:
                self.add_error(field, f"{path}: {message}" if field != path else message)
        self.policy_data = data
        return cleaned


@admin.register(DeliveryPolicy)
class DeliveryPolicyAdmin(CascadeDeleteAdmin):
    form = DeliveryPolicyForm
    uncounted_models = (PolicyUsage, PolicyCounter)
    list_display = ["key", "caps_text", "quiet_hours_text", "on_blocked", "updated_at"]
    search_fields = ["key"]  # policies number in the tens
    ordering = ["key"]
    readonly_fields = ["id", "used_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "key", "on_blocked", "used_by"]}),
        ("Frequency caps", {"fields": ["caps"]}),
        ("Quiet hours", {"fields": list(QUIET_FIELDS)}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Caps")
    def caps_text(self, obj: DeliveryPolicy) -> str:
        return "; ".join(
            f"{c.get('count')} {'/'.join(c.get('actions', []))} per {c.get('window')}"
            for c in obj.caps or []
        )

    @admin.display(description="Quiet hours")
    def quiet_hours_text(self, obj: DeliveryPolicy) -> str:
        quiet = obj.quiet_hours
        if not quiet:
            return "—"
        return f"{quiet['start']}-{quiet['end']} ({quiet['default_timezone']})"

    @admin.display(description="Used by workflows")
    def used_by(self, obj: DeliveryPolicy) -> Any:
        names = list(obj.workflows.order_by("name").values_list("name", flat=True)[:50])
        if not names:
            return "—"
        return format_html_join(", ", "{}", ((name,) for name in names))

    def save_model(
        self, request: HttpRequest, obj: DeliveryPolicy, form: Any, change: bool
    ) -> None:
        data: dict[str, Any] = form.policy_data
        if change:
            saved = delivery_policy_update(
                policy=DeliveryPolicy.objects.get(pk=obj.pk), data=data, replace=True
            )
        else:
            saved = delivery_policy_create(data=data)
        obj.pk = saved.pk
        obj._state.adding = False

    def delete_one(self, obj: DeliveryPolicy) -> None:
        delivery_policy_delete(policy=obj)

    def deleted_with(self, objects: QuerySet[DeliveryPolicy]) -> list[QuerySet[Any]]:
        return []
