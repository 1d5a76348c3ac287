"""Admin for segments: the list with member counts, a segment's members over time (a
chart with its numbers in a table), the condition edited as JSON with the problems shown
on the field at their node's path, a preview of a condition's members before saving,
and the memberships (current and past) per segment or per customer, searchable and
exported as CSV.

Every change goes through automation.segments.services (the same as the API); the
preview is automation.segments.preview's, the reads are the segments' selectors.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from automation.segments import selectors
from automation.segments.member_lists import members_csv_lines, memberships_search
from automation.segments.models import Segment, SegmentCheck, SegmentMembership
from automation.segments.preview import segment_preview
from automation.segments.services import (
    SegmentInput,
    segment_create,
    segment_delete,
    segment_update,
    segment_validate,
)
from automation.segments.trends import TREND_DAYS, segment_member_trend
from automation.workflows.admin import render_tree
from automation.workflows.admin.builder import ConditionTreeField, place_node_errors
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.forms import RecordAdmin
from project.admin.lists import BigTableAdmin, ParameterFilter
from project.errors import HeraldError

CONDITION_HELP = (
    'A tree of {"all": […]}, {"any": […]}, {"not": {…}} and leaves such as '
    '{"count": {"event_type": "purchase", "within": "P30D"}, "op": "gte", "value": 3}; '
    "see docs/automation.md (Segments)."
)


class SegmentAdminForm(forms.ModelForm):
    # The admin's rule builder (segment leaves), with "Advanced" JSON; the preview reads
    # the form's "condition" value, which the builder keeps in step.
    condition = ConditionTreeField(
        flavour="segment", root="condition", required=False, help_text=CONDITION_HELP
    )

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
        place_node_errors(self, segment_validate(data, segment_id=segment_id))
        self.segment_input = data
        return cleaned


def members_url(segment_id: str, *, current: bool = True) -> str:
    url = reverse("admin:automation_segmentmembership_changelist") + f"?segment={segment_id}"
    return url + ("&stay=current" if current else "")


def export_url(segment_id: str, term: str = "") -> str:
    url = reverse("admin:automation_segment_export", args=[segment_id])
    return url + ("?" + urlencode({"q": term}) if term else "")


@admin.register(Segment)
class SegmentAdmin(CascadeDeleteAdmin):
    form = SegmentAdminForm
    change_form_template = "admin/automation/segment/change_form.html"
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

    class Media:
        css = {"all": ("automation/admin.css", "automation/segments/admin.css")}
        js = ("herald/vendor/chart.js/chart.umd.min.js", "automation/segments/admin.js")

    def get_fieldsets(self, request: HttpRequest, obj: Segment | None = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        # The API's list: member_count annotated in the list's one statement.
        return selectors.segment_list()

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "preview/",
                wrap(require_POST(self.preview_view)),
                name="automation_segment_preview",
            ),
            path(
                "<path:object_id>/members.csv",
                wrap(self.export_view),
                name="automation_segment_export",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Members", ordering="member_count")
    def members(self, obj: Segment) -> SafeString:
        return format_html(
            '<a href="{}">{}</a> (<a href="{}">history</a>)',
            members_url(obj.pk),
            obj.member_count,  # type: ignore[attr-defined]
            members_url(obj.pk, current=False),
        )

    @admin.display(description="Condition (readable)")
    def readable_condition(self, obj: Segment) -> SafeString:
        return format_html('<div class="herald-tree">{}</div>', render_tree(obj.condition))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Segment | None = None,
    ) -> HttpResponse:
        context["preview_url"] = reverse("admin:automation_segment_preview")
        if obj is not None:
            context["trend"] = segment_member_trend(segment_id=obj.pk, now=timezone.now())
            context["trend_days"] = TREND_DAYS
            context["members_url"] = members_url(obj.pk)
            context["export_url"] = export_url(obj.pk)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """POST {"condition": {…}, "customer_id"?}: the preview service's answer as JSON,
        or its problems by path (400). Stores nothing."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _problem("The body is not JSON.", None)
        if not isinstance(body, dict):
            body = {}
        condition, customer_id = body.get("condition"), body.get("customer_id") or None
        if not isinstance(condition, dict):
            return _problem("condition: Must be a JSON object.", None)
        if customer_id is not None and not isinstance(customer_id, str):
            return _problem("customer_id: Must be a customer id.", None)
        try:
            result = segment_preview(condition=condition, customer_id=customer_id)
        except HeraldError as exc:
            return _problem(exc.message, exc.details)
        return JsonResponse({"data": result})

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """The current members as CSV (customer_id, external_id, email, entered_at),
        streamed; `q` narrows them as the members list's search does."""
        segment = get_object_or_404(Segment, pk=object_id)
        if not self.has_view_permission(request, segment):
            raise PermissionDenied
        term = request.GET.get("q", "")
        response = StreamingHttpResponse(
            members_csv_lines(segment_id=segment.pk, term=term), content_type="text/csv"
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = (
            f'attachment; filename="segment-{segment.key}-members-{stamp}.csv"'
        )
        return response

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


def _problem(message: str, details: Any) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "details": details}}, status=400)


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
    """Memberships: per segment (from the segment list) or per customer, current or
    past; searched by the customer's id, or the start of their external id or email.
    Filtered to one segment's current members, the list offers them as CSV."""

    change_list_template = "admin/automation/segmentmembership/change_list.html"
    list_display = ["segment_key", "customer_link", "email", "entered_at", "exited_at"]
    list_filter = [SegmentFilter, StayFilter]
    search_fields = ["customer__external_id"]
    search_help_text = "A customer's id, or the start of their external id or email."
    sortable_by = ["entered_at"]
    ordering = ["-entered_at", "-id"]
    list_select_related = ["segment", "customer"]

    def search_exact(self, queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
        return memberships_search(queryset, term)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        segment_id = request.GET.get("segment")
        context = dict(extra_context or {})
        if segment_id and request.GET.get("stay") == "current":
            context["export_url"] = export_url(segment_id, request.GET.get("q", "").strip())
        return super().changelist_view(request, context)

    @admin.display(description="Segment")
    def segment_key(self, obj: SegmentMembership) -> str:
        return obj.segment.key

    @admin.display(description="Customer")
    def customer_link(self, obj: SegmentMembership) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customer_change", args=[obj.customer_id]),
            str(obj.customer),
        )

    @admin.display(description="Email")
    def email(self, obj: SegmentMembership) -> str:
        return obj.customer.email
