"""Admin for scheduled callbacks: schedules (pause / resume / run now) and their runs.

Every change goes through automation.schedules.services (the same services as the API):
the admin shows schedules read-only and acts with actions. Runs are linked (a
schedule firing every minute has 40,000 a month), with the latest few shown on
the schedule's page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from automation.schedules import selectors, services
from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Endpoint
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import pretty_json
from project.admin.forms import RecordAdmin
from project.admin.lists import BigTableAdmin, ParameterFilter
from project.errors import HeraldError

RECENT_RUNS = 10
# Tag choices come from the newest schedules only, so the filter costs one bounded query;
# any ?tag=… value still filters (through the GIN index on PostgreSQL).
TAG_SAMPLE = 1000


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
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API (POST /schedules), which validates the cron

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
