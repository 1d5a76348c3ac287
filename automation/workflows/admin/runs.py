"""Admin for workflow runs: the run history per workflow and per event, by outcome."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from automation.workflows.admin.render import explanation_table
from automation.workflows.models import WorkflowRun
from automation.workflows.splits import run_steps
from project.admin.display import pretty_json
from project.admin.export import CsvExportMixin
from project.admin.forms import RecordAdmin
from project.admin.lists import BigTableAdmin, CreatedWithinByIdFilter


def event_runs_url(event_id: str) -> str:
    """The run history of one event (every workflow that matched it)."""
    return reverse("admin:automation_workflowrun_changelist") + f"?q={event_id}"


class OutcomeFilter(admin.SimpleListFilter):
    """The run's outcome: what its actions came to (workflowrun_status_idx)."""

    title = "outcome"
    parameter_name = "status__exact"  # the parameter Django's own status filter used

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("succeeded", "Succeeded (all actions done)"),
            ("failed", "Failed (an action failed)"),
            ("waiting", "Waiting (in a wait action)"),
            ("pending", "Pending (being worked on)"),
            ("cancelled", "Cancelled (the workflow was deactivated)"),
            ("converted", "Converted (the goal was reached; the rest skipped)"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WorkflowRun]
    ) -> QuerySet[WorkflowRun]:
        value = self.value()
        return queryset.filter(status=value) if value else queryset


@admin.register(WorkflowRun)
class WorkflowRunAdmin(CsvExportMixin, RecordAdmin, BigTableAdmin):
    """Run history: per workflow (filter) and per event (search by event id).

    Runs are one per matched (workflow, event): millions. Unfiltered and by
    outcome they are listed by the time-ordered primary key; one workflow's
    runs come from workflowrun_workflow_idx (workflow, created_at, id).
    """

    list_display = [
        "id",
        "workflow",
        "event_link",
        "customer",
        "status",
        "actions_done",
        "source",
        "created_at",
        "finished_at",
    ]
    # The workflow filter lists every workflow: a small table (hundreds), unlike events.
    list_filter = [OutcomeFilter, "workflow", CreatedWithinByIdFilter]
    # Declared for the search box; search_exact uses the unique (event, workflow) index and the pk.
    search_fields = ["=event__id", "=id"]
    search_help_text = "An event id (that event's runs) or a run id."
    list_select_related = ["workflow", "customer"]
    sortable_by = ()
    fields = (
        "id",
        "workflow",
        "event_link",
        "customer",
        "status",
        "actions_done",
        "error",
        "readable_explanation",
        "outcomes_pretty",
        "resume_at",
        "created_at",
        "finished_at",
        "workflow_version",
        "source",
    )
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        if request.GET.get("workflow__id__exact"):
            return ("-created_at", "-id")
        return ("-id",)

    def search_exact(self, queryset: QuerySet[WorkflowRun], term: str) -> QuerySet[WorkflowRun]:
        return queryset.filter(Q(event_id=term) | Q(pk=term))

    @admin.display(description="actions done")
    def actions_done(self, obj: WorkflowRun) -> str:
        # `position` is the next step to run: so many of the run's steps are done (a
        # split's steps include its branch's actions once the branch is known).
        steps = run_steps(obj.actions, obj.branch) if isinstance(obj.actions, list) else []
        branch = "" if obj.branch is None else f" (branch {obj.branch + 1})"
        return f"{obj.position} of {len(steps)}{branch}"

    @admin.display(description="Action outcomes")
    def outcomes_pretty(self, obj: WorkflowRun) -> SafeString:
        return pretty_json(obj.outcomes)

    @admin.display(description="Event")
    def event_link(self, obj: WorkflowRun) -> SafeString:
        if obj.event_id is None:  # a segment trigger or a broadcast started it
            return format_html("{}", json.dumps(obj.trigger))
        return format_html(
            '<a href="{}">{}</a> (<a href="{}">its runs</a>)',
            reverse("admin:events_app_event_change", args=[obj.event_id]),
            obj.event_id,
            event_runs_url(obj.event_id),
        )

    @admin.display(description="Explanation")
    def readable_explanation(self, obj: WorkflowRun) -> SafeString:
        leaves = obj.explanation.get("leaves", []) if isinstance(obj.explanation, dict) else []
        return explanation_table(leaves)
