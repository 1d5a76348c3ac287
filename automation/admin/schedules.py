"""Admin for scheduled callbacks: schedules (pause / resume / run now) and their runs.

Every change goes through automation.schedules (the same services as the API):
the admin shows schedules read-only and acts with actions. Runs are linked (a
schedule firing every minute has 40,000 a month), with the latest few shown on
the schedule's page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from automation import schedule_selectors as selectors
from automation import schedules as services
from automation.models import Schedule, ScheduleRun
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


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "owner",
        "interval",
        "interval_description",
        "timezone",
        "next_run_at",
        "last_run_at",
        "end_date",
    )
    list_filter = ("status", TagFilter)
    # Exact matches only: both use an index (primary key, schedule_owner_idx).
    search_fields = ("=id", "=owner")
    ordering = ("-created_date", "-id")
    show_full_result_count = False
    actions = ("pause", "resume", "run_now")
    readonly_fields = (
        "id",
        "status",
        "owner",
        "interval",
        "interval_description",
        "timezone",
        "callback_url",
        "context",
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

    @admin.display(description="Runs")
    def runs(self, schedule: Schedule) -> str:
        recent = ScheduleRun.objects.filter(schedule=schedule).select_related("delivery")[
            :RECENT_RUNS
        ]
        link = reverse("admin:automation_schedulerun_changelist") + f"?schedule={schedule.pk}"
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

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.schedule_delete(schedule=schedule)


class ScheduleFilter(admin.SimpleListFilter):
    """?schedule=<id> from a schedule's page; no choice list (there may be 100k schedules)."""

    title = "schedule"
    parameter_name = "schedule"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(schedule_id=value) if value else queryset


@admin.register(ScheduleRun)
class ScheduleRunAdmin(admin.ModelAdmin):
    list_display = ("scheduled_for", "started_at", "schedule_link", "delivery_link")
    list_filter = (ScheduleFilter,)
    list_select_related = ("delivery",)
    ordering = ("-scheduled_for", "-id")
    show_full_result_count = False
    readonly_fields = ("schedule", "scheduled_for", "started_at", "delivery")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

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
