"""Admin for segments: the list with member counts, the condition edited as JSON with
the problems shown on the field at their node's path, and the memberships (current and
past) per segment or per customer.

Every change goes through automation.segments.services (the same as the API).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from automation.segments import selectors
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.segments.services import (
    SegmentInput,
    segment_create,
    segment_delete,
    segment_update,
    segment_validate,
)
from automation.workflows.admin import render_tree
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import PrettyJSONFormField
from project.admin.forms import RecordAdmin
from project.admin.lists import BigTableAdmin, ParameterFilter


class SegmentAdminForm(forms.ModelForm):
    # Indented JSON; the services validate the content (messages point at the node).
    condition = PrettyJSONFormField(required=False)

    class Meta:
        model = Segment
        fields = ["key", "name", "description", "condition"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        data = SegmentInput(
            key=cleaned.get("key"),
            name=cleaned.get("name"),
            description=cleaned.get("description") or "",
            condition=cleaned.get("condition") or {},
        )
        segment_id = None if self.instance._state.adding else self.instance.pk
        for path, messages in segment_validate(data, segment_id=segment_id).items():
            field = path.split(".", 1)[0].split("[", 1)[0]
            for message in messages:
                # Shown in place: on the field, with the faulty node's path.
                self.add_error(field, f"{path}: {message}" if field != path else message)
        self.segment_input = data
        return cleaned


def members_url(segment_id: str, *, current: bool = True) -> str:
    url = reverse("admin:automation_segmentmembership_changelist") + f"?segment={segment_id}"
    return url + ("&stay=current" if current else "")


@admin.register(Segment)
class SegmentAdmin(CascadeDeleteAdmin):
    form = SegmentAdminForm
    uncounted_models = (SegmentCheck,)
    list_display = ["key", "name", "status", "members", "built_at", "updated_at"]
    list_filter = ["status"]
    search_fields = ["key", "name"]  # segments number in the hundreds
    ordering = ["key"]
    readonly_fields = ["id", "status", "version", "built_at", "readable_condition", "members"]
    fieldsets = [
        (None, {"fields": ["id", "key", "name", "description", "status", "version"]}),
        ("Condition", {"fields": ["readable_condition", "condition"]}),
        ("Members", {"fields": ["members", "built_at"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["key", "name", "description"]}),
        ("Condition", {"fields": ["condition"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        return selectors.segment_list()

    def get_form(
        self, request: HttpRequest, obj: Segment | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        form.base_fields["condition"].help_text = (
            'A tree of {"all": […]}, {"any": […]}, {"not": {…}} and leaves such as '
            '{"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 3}; '
            "see docs/automation.md (Segments)."
        )
        return form

    @admin.display(description="Members", ordering="member_count")
    def members(self, obj: Segment) -> SafeString:
        count = getattr(obj, "member_count", None)
        if count is None:
            count = obj.memberships.filter(exited_at__isnull=True).count()
        return format_html(
            '<a href="{}">{}</a> (<a href="{}">history</a>)',
            members_url(obj.pk),
            count,
            members_url(obj.pk, current=False),
        )

    @admin.display(description="Condition (readable)")
    def readable_condition(self, obj: Segment) -> SafeString:
        return format_html('<div class="herald-tree">{}</div>', render_tree(obj.condition))

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        data: SegmentInput = form.segment_input
        if change:
            saved = segment_update(segment=Segment.objects.get(pk=obj.pk), data=data)
        else:
            saved = segment_create(data=data)
        obj.pk, obj.version, obj.status = saved.pk, saved.version, saved.status
        obj._state.adding = False

    def delete_one(self, obj: Segment) -> None:
        segment_delete(segment=obj)


class SegmentFilter(ParameterFilter):
    title = "segment"
    parameter_name = "segment"
    field_name = "segment_id"

    def label(self, value: str) -> str:
        return Segment.objects.filter(pk=value).values_list("key", flat=True).first() or value


class StayFilter(admin.SimpleListFilter):
    title = "stay"
    parameter_name = "stay"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("current", "Current members"), ("past", "Past (exited)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "current":
            return queryset.filter(exited_at__isnull=True)
        if self.value() == "past":
            return queryset.filter(exited_at__isnull=False)
        return queryset


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(RecordAdmin, BigTableAdmin):
    """Memberships: per segment (from the segment list) or per customer (search by the
    customer's id or external id), current or past."""

    list_display = ["segment_key", "customer_link", "entered_at", "exited_at"]
    list_filter = [SegmentFilter, StayFilter]
    search_fields = ["customer__external_id"]
    search_help_text = "A customer's id or external id (exact)."
    sortable_by = ["entered_at"]
    ordering = ["-entered_at", "-id"]
    list_select_related = ["segment", "customer"]

    def search_exact(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        by_id = queryset.filter(customer_id=term)
        return by_id | queryset.filter(customer__external_id=term)

    @admin.display(description="Segment")
    def segment_key(self, obj: SegmentMembership) -> str:
        return obj.segment.key

    @admin.display(description="Customer")
    def customer_link(self, obj: SegmentMembership) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customer_change", args=[obj.customer_id]),
            obj.customer.external_id,
        )
