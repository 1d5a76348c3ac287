"""Admin for scheduled callbacks: schedules (create, edit, pause / resume / run now) and runs.

Every change goes through automation.schedules.services (the same services as the API):
the form validates with the services' own checks and saves with schedule_create /
schedule_update. While the cron expression is typed, its human description and next
runs come from a small JSON endpoint (services.schedule_preview) drawn by
automation/static/automation/schedule.js. Runs are linked (a schedule firing every
minute has 40,000 a month), with the latest few shown on the schedule's page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from automation.schedules import selectors, services
from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_check_url
from automation.workflows.admin.builder import StorableJSONField
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import pretty_json
from project.admin.forms import RecordAdmin, adopt_row
from project.admin.lists import BigTableAdmin, ParameterFilter
from project.errors import HeraldError

RECENT_RUNS = 10
# Tag choices come from the newest schedules only, so the filter costs one bounded query;
# any ?tag=… value still filters (through the GIN index on PostgreSQL).
TAG_SAMPLE = 1000
# The preview answers while typing: longer input than a form field takes is refused at once.
MAX_TYPED = 200


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = Schedule.objects.order_by("-created_date").values_list("tags", flat=True)
        tags = sorted({tag for tags in recent[:TAG_SAMPLE] for tag in tags or []})
        return [(tag, tag) for tag in tags[:100]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        return queryset & selectors.schedule_list(tags=[value])


def _run_action(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Schedule],
    service: Any,
    verb: str,
) -> None:
    done = 0
    for schedule in queryset:
        try:
            service(schedule=schedule)
            done += 1
        except HeraldError as exc:
            model_admin.message_user(request, f"{schedule.pk}: {exc.message}", messages.WARNING)
    if done:
        model_admin.message_user(request, f"{verb} {done} schedule(s).", messages.SUCCESS)


class ScheduleForm(forms.ModelForm):
    """A schedule as the API takes it; checked with the services' own checks."""

    interval = forms.CharField(
        max_length=200,
        help_text="Cron expression, e.g. <code>0 9 * * 1-5</code> (weekdays at 09:00) or "
        "<code>*/15 * * * *</code>; an optional leading seconds field.",
        widget=forms.TextInput(attrs={"size": 30, "class": "herald-cron", "autocomplete": "off"}),
    )
    timezone = forms.CharField(
        required=False,
        max_length=64,
        help_text="IANA zone the expression is read in (e.g. Europe/Paris); empty = UTC.",
        widget=forms.TextInput(attrs={"size": 30, "class": "herald-cron-zone"}),
    )
    context = StorableJSONField(
        required=False, initial=dict, help_text="The JSON body of each callback (an object)."
    )
    tag_text = forms.CharField(
        required=False, label="Tags", help_text="Comma-separated, e.g. newsletter, weekly."
    )

    class Meta:
        model = Schedule
        fields = ("owner", "callback_url", "interval", "timezone", "end_date", "context")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["interval"].widget.attrs["data-preview"] = reverse(
            "admin:automation_schedule_preview"
        )
        if self.instance.pk:
            self.fields["tag_text"].initial = ", ".join(self.instance.tags or [])

    def clean_tag_text(self) -> list[str]:
        text = self.cleaned_data.get("tag_text") or ""
        return [tag.strip() for tag in text.split(",") if tag.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        interval, zone = cleaned.get("interval"), cleaned.get("timezone") or ""
        preview = None
        if interval:
            try:
                preview = services.schedule_preview(interval=interval, tz_name=zone)
            except HeraldError as exc:
                for field, problems in (exc.details or {"interval": [exc.message]}).items():
                    for problem in problems:
                        self.add_error(field if field in self.fields else None, problem)
        url = cleaned.get("callback_url")
        if url and "callback_url" in self.changed_data:
            try:
                endpoint_check_url(url, field="callback_url")
            except HeraldError as exc:
                self.add_error("callback_url", exc.message)
        end = cleaned.get("end_date")
        if end is not None and end <= timezone.now():
            self.add_error("end_date", "Must be in the future.")
        elif end is not None and preview and preview["next_runs"][0] > end:
            self.add_error(
                "end_date",
                f"The first run ({preview['next_runs'][0]:%Y-%m-%d %H:%M} UTC) is after the end "
                "date: the schedule would never run.",
            )
        context = cleaned.get("context")
        if context is not None and not isinstance(context, dict):
            self.add_error("context", "Must be a JSON object.")
        return cleaned


def schedule_runs_url(schedule_id: str) -> str:
    return reverse("admin:automation_schedulerun_changelist") + f"?schedule={schedule_id}"


@admin.register(Schedule)
class ScheduleAdmin(CascadeDeleteAdmin, BigTableAdmin):
    # The owner links to the schedule: a 26-character id column would push the
    # run times off a laptop screen (the id is on the schedule's page and searchable).
    list_display = (
        "owner",
        "status",
        "interval_readable",
        "next_run_at",
        "last_run_at",
        "end_date",
        "tag_list",
        "runs_link",
    )
    # status: schedule_status_idx (status, created_date, id); tag: the GIN index.
    list_filter = ("status", TagFilter)
    # Declared for the search box; search_exact compares exactly (pk, schedule_owner_idx).
    search_fields = ("=id", "=owner")
    search_help_text = "Exact schedule id or owner email."
    ordering = ("-created_date", "-id")
    sortable_by = ("created_date",)
    actions = ("pause", "resume", "run_now")
    form = ScheduleForm
    # On the change page: what the services let change, then the schedule's state.
    editable = ("callback_url", "interval", "timezone", "end_date", "context", "tag_text")
    readonly_fields = (
        "id",
        "status",
        "owner",
        "interval",
        "interval_description",
        "timezone",
        "callback_url",
        "context_pretty",
        "tags",
        "end_date",
        "next_run_at",
        "last_run_at",
        "created_date",
        "endpoint",
        "runs",
    )
    add_fields = (
        "owner",
        "callback_url",
        "interval",
        "timezone",
        "end_date",
        "context",
        "tag_text",
    )

    class Media:
        js = ("automation/schedule.js",)
        css = {"all": ("automation/builder.css",)}

    def get_fields(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        if obj is None:
            return self.add_fields
        state = ("interval_description", "next_run_at", "last_run_at", "created_date")
        if obj.status == Schedule.Status.FINISHED:  # the services refuse to change it
            changeable: tuple[str, ...] = (
                "callback_url",
                "interval",
                "timezone",
                "end_date",
                "context_pretty",
                "tags",
            )
        else:
            changeable = self.editable
        return ("id", "status", "owner", *changeable, *state, "endpoint", "runs")

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        if obj is None:
            return ()
        if obj.status == Schedule.Status.FINISHED:
            return self.readonly_fields
        return tuple(f for f in self.readonly_fields if f not in self.editable)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="automation_schedule_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The human description and next runs of ?interval=…&timezone=… (as typed)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        interval = request.GET.get("interval", "")
        zone = request.GET.get("timezone", "").strip()
        if len(interval) > MAX_TYPED or len(zone) > MAX_TYPED or "\x00" in interval + zone:
            return JsonResponse({"error": "Not a cron expression."}, status=400)
        try:
            preview = services.schedule_preview(
                interval=interval,
                tz_name=zone,
            )
        except HeraldError as exc:
            return JsonResponse({"error": exc.message}, status=400)
        return JsonResponse(
            {
                "interval_description": preview["interval_description"],
                "next_runs": [
                    run.isoformat().replace("+00:00", "Z") for run in preview["next_runs"]
                ],
            }
        )

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = services.schedule_create(
                owner=data["owner"],
                end_date=data["end_date"],
                interval=data["interval"],
                callback_url=data["callback_url"],
                context=data.get("context") or {},
                tags=data.get("tag_text") or [],
                tz_name=data.get("timezone") or "",
            )
            adopt_row(obj, created)
            return
        renamed = {"tag_text": "tags"}
        fields = {
            renamed.get(name, name): data[name]
            for name in form.changed_data
            if renamed.get(name, name) in services.UPDATABLE_FIELDS
        }
        if "context" in fields and fields["context"] is None:
            fields["context"] = {}
        if fields:
            services.schedule_update(schedule=Schedule.objects.get(pk=obj.pk), fields=fields)

    def search_exact(self, queryset: QuerySet[Schedule], term: str) -> QuerySet[Schedule]:
        return queryset.filter(Q(pk=term) | Q(owner=term))

    @admin.display(description="interval")
    def interval_readable(self, schedule: Schedule) -> SafeString:
        return format_html(
            "<code>{}</code><br>{}{}",
            schedule.interval,
            schedule.interval_description,
            f" ({schedule.timezone})" if schedule.timezone else " (UTC)",
        )

    @admin.display(description="tags")
    def tag_list(self, schedule: Schedule) -> str:
        return ", ".join(schedule.tags or []) or "—"

    @admin.display(description="runs")
    def runs_link(self, schedule: Schedule) -> SafeString:
        return format_html('<a href="{}">runs</a>', schedule_runs_url(schedule.pk))

    @admin.display(description="context")
    def context_pretty(self, schedule: Schedule) -> SafeString:
        return pretty_json(schedule.context)

    @admin.display(description="Runs")
    def runs(self, schedule: Schedule) -> str:
        recent = ScheduleRun.objects.filter(schedule=schedule).select_related("delivery")[
            :RECENT_RUNS
        ]
        link = schedule_runs_url(schedule.pk)
        rows = format_html_join(
            "",
            "<li>{} (ran {}): {}</li>",
            (
                (
                    run.scheduled_for.isoformat(),
                    run.started_at.isoformat(),
                    run.delivery.status if run.delivery else "delivery removed",
                )
                for run in recent
            ),
        )
        return format_html('<ul>{}</ul><a href="{}">All runs</a>', rows, link)

    @admin.action(description="Pause")
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        _run_action(self, request, queryset, services.schedule_pause, "Paused")

    @admin.action(description="Resume (next run from now)")
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        _run_action(self, request, queryset, services.schedule_resume, "Resumed")

    @admin.action(description="Run now (one extra callback)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        _run_action(self, request, queryset, services.schedule_run_now, "Ran")

    def deleted_with(self, objects: QuerySet[Schedule]) -> list[QuerySet[Any]]:
        # schedule_delete deletes each schedule's endpoint (and its delivery log) too.
        return [Endpoint.objects.filter(schedule__in=objects)]

    def delete_one(self, obj: Schedule) -> None:
        services.schedule_delete(schedule=obj)


class ScheduleFilter(ParameterFilter):
    """?schedule=<id> from a schedule's page; no choice list (there may be 100k schedules)."""

    title = "schedule"
    parameter_name = "schedule"
    field_name = "schedule_id"


@admin.register(ScheduleRun)
class ScheduleRunAdmin(RecordAdmin, BigTableAdmin):
    """Every tick of every schedule: a schedule firing each minute adds 40,000 a month."""

    list_display = (
        "scheduled_for",
        "started_at",
        "schedule_link",
        "delivery_link",
        "status_code",
    )
    list_filter = (ScheduleFilter,)
    list_select_related = ("delivery",)
    sortable_by = ()
    search_fields = ("=schedule__id",)
    search_help_text = "Exact schedule id."
    readonly_fields = ("schedule", "scheduled_for", "started_at", "delivery")
    fields = readonly_fields

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # One schedule's runs: newest tick first, read backwards from the unique
        # (schedule, scheduled_for) index. All runs: the serial primary key (insert order).
        if request.GET.get(ScheduleFilter.parameter_name):
            return ("-scheduled_for",)
        return ("-id",)

    def search_exact(self, queryset: QuerySet[ScheduleRun], term: str) -> QuerySet[ScheduleRun]:
        return queryset.filter(schedule_id=term)

    @admin.display(description="Schedule")
    def schedule_link(self, run: ScheduleRun) -> str:
        url = reverse("admin:automation_schedule_change", args=[run.schedule_id])
        return format_html('<a href="{}">{}</a>', url, run.schedule_id)

    @admin.display(description="Delivery")
    def delivery_link(self, run: ScheduleRun) -> str:
        if run.delivery is None:
            return "-"
        url = reverse("admin:automation_delivery_change", args=[run.delivery_id])
        return format_html('<a href="{}">{}</a>', url, run.delivery.status)

    @admin.display(description="HTTP status")
    def status_code(self, run: ScheduleRun) -> str:
        code = run.delivery.last_status_code if run.delivery else None
        return str(code) if code is not None else "—"
