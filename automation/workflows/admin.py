"""Admin for workflows and their runs.

Workflows are saved through the same services as the API
(automation.workflows.services), so a tree that the API refuses is refused here too,
with each message shown on its field and prefixed by the faulty node's path.
The condition tree is shown as readable nested text next to the JSON.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from automation.webhooks.models import Endpoint
from automation.workflows.conditions.trees import SUBJECTS
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.services import (
    WorkflowInput,
    workflow_create,
    workflow_delete,
    workflow_set_active,
    workflow_update,
    workflow_validate,
)
from events_app.models import EventType
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import PrettyJSONFormField, pretty_json
from project.admin.export import CsvExportMixin
from project.admin.forms import RecordAdmin
from project.admin.lists import BigTableAdmin, CreatedWithinByIdFilter

OP_WORDS = {
    "eq": "=",
    "ne": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "between": "between",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "exists": "exists",
    "not_exists": "does not exist",
    "matches": "matches",
    "within_last": "within the last",
    "more_than_ago": "more than … ago:",
}
RECENT_RUNS = 20


def _leaf_text(leaf: dict[str, Any]) -> str:
    subject = next((key for key in SUBJECTS if key in leaf), "?")
    target = leaf.get(subject)
    if subject == "first":
        first = leaf.get("value", True)
        return f"this is {'' if first else 'not '}the customer's first '{target}' event"
    if subject == "segment":
        return f"a member of segment '{target}'"
    if subject == "count" and isinstance(target, dict):
        what = f"number of '{target.get('event_type')}' events within {target.get('within')}"
    else:
        what = f"{subject} {target}"
    op = leaf.get("op", "")
    value = f" {json.dumps(leaf['value'], ensure_ascii=False)}" if "value" in leaf else ""
    return f"{what} {OP_WORDS.get(op, op)}{value}"


def render_tree(tree: Any) -> SafeString:
    """A condition tree as nested HTML lists ("ALL of", "ANY of", "NOT")."""
    if not isinstance(tree, dict) or not tree:
        return mark_safe("<em>always (no conditions)</em>")
    for key, title in (("all", "ALL of"), ("any", "ANY of")):
        if key in tree and isinstance(tree[key], list):
            items = format_html_join("", "<li>{}</li>", ((render_tree(c),) for c in tree[key]))
            return format_html("<strong>{}</strong><ul>{}</ul>", title, items)
    if "not" in tree:
        return format_html("<strong>NOT</strong><ul><li>{}</li></ul>", render_tree(tree["not"]))
    return format_html("{}", _leaf_text(tree))


class WorkflowAdminForm(forms.ModelForm):
    trigger_event_types = forms.ModelMultipleChoiceField(queryset=EventType.objects.all())
    # Indented JSON; the services validate the content (messages point at the node).
    conditions = PrettyJSONFormField(required=False)
    actions = PrettyJSONFormField(required=False)

    class Meta:
        model = Workflow
        fields = ["name", "trigger_event_types", "conditions", "actions", "active", "reentry"]
        help_texts = {
            "reentry": "every_event, once_per_customer or once_per_customer_per:P7D",
        }

    FIELD_OF_PATH = {
        "conditions": "conditions",
        "actions": "actions",
        "trigger_event_types": "trigger_event_types",
        "reentry": "reentry",
        "name": "name",
    }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        data = WorkflowInput(
            name=cleaned.get("name"),
            trigger_event_types=[t.pk for t in cleaned.get("trigger_event_types") or []],
            conditions=cleaned.get("conditions") or {},
            actions=cleaned.get("actions") or [],
            active=cleaned.get("active"),
            reentry=cleaned.get("reentry"),
        )
        errors, _ = workflow_validate(data)
        for path, node_messages in errors.items():
            head = path.split(".", 1)[0].split("[", 1)[0]
            field = self.FIELD_OF_PATH.get(head)
            for message in node_messages:
                # Shown in place: on the field, with the faulty node's path.
                self.add_error(field, f"{path}: {message}" if field != path else message)
        self.workflow_input = data
        return cleaned


@admin.register(Workflow)
class WorkflowAdmin(CascadeDeleteAdmin):
    form = WorkflowAdminForm
    # The links are bookkeeping; the endpoints they name are counted (deleted_with).
    uncounted_models = (WorkflowEndpoint,)
    list_display = ["name", "triggers", "active", "reentry", "version", "updated_at", "runs_link"]
    list_filter = ["active"]
    search_fields = ["name"]  # workflows number in the hundreds: a substring search is fine
    ordering = ["-created_at"]
    actions = ["activate", "deactivate"]
    readonly_fields = ["id", "readable_conditions", "version", "recent_runs", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "name", "trigger_event_types", "active", "reentry", "version"]}),
        ("Conditions", {"fields": ["readable_conditions", "conditions"]}),
        ("Actions", {"fields": ["actions"]}),
        ("Run history", {"fields": ["recent_runs", "updated_at"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["name", "trigger_event_types", "active", "reentry"]}),
        ("Conditions", {"fields": ["conditions"]}),
        ("Actions", {"fields": ["actions"]}),
    ]

    class Media:
        css = {"all": ("automation/admin.css",)}

    def get_fieldsets(self, request: HttpRequest, obj: Workflow | None = None) -> Any:
        # A new workflow has no id, version or runs yet: the add page asks only for input.
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return super().get_queryset(request).prefetch_related("trigger_event_types")

    def get_form(
        self, request: HttpRequest, obj: Workflow | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        form.base_fields["conditions"].help_text = (
            'A tree of {"all": […]}, {"any": […]}, {"not": {…}} and leaves such as '
            '{"property": "amount", "op": "gte", "value": 100}; see docs/automation.md.'
        )
        form.base_fields[
            "actions"
        ].help_text = 'A list such as [{"type": "add_tags", "tags": ["vip"]}].'
        return form

    @admin.action(description="Activate selected workflows")
    def activate(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(description="Deactivate selected workflows (cancels their unfinished runs)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self._set_active(request, queryset, active=False)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Workflow], active: bool) -> None:
        workflows = list(queryset.filter(active=not active))
        for workflow in workflows:
            workflow_set_active(workflow=workflow, active=active)
        verb = "Activated" if active else "Deactivated"
        self.message_user(request, f"{verb} {len(workflows)} workflow(s).", messages.SUCCESS)

    @admin.display(description="Triggers")
    def triggers(self, obj: Workflow) -> str:
        return ", ".join(sorted(t.key for t in obj.trigger_event_types.all()))

    @admin.display(description="Conditions (readable)")
    def readable_conditions(self, obj: Workflow) -> SafeString:
        return format_html('<div class="herald-tree">{}</div>', render_tree(obj.conditions))

    @staticmethod
    def runs_url(obj: Workflow) -> str:
        return reverse("admin:automation_workflowrun_changelist") + f"?workflow__id__exact={obj.pk}"

    @admin.display(description="Runs")
    def runs_link(self, obj: Workflow) -> SafeString:
        return format_html('<a href="{}">runs</a>', self.runs_url(obj))

    @admin.display(description=f"Latest {RECENT_RUNS} runs")
    def recent_runs(self, obj: Workflow) -> SafeString:
        if not obj.pk:
            return mark_safe("—")
        runs = WorkflowRun.objects.filter(workflow=obj).order_by("-created_at", "-id")[:RECENT_RUNS]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td><a href="{}">{}</a></td>'
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:automation_workflowrun_change", args=[run.pk]),
                    run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    reverse("admin:events_app_event_change", args=[run.event_id]),
                    run.event_id,
                    run.status,
                    run.position,
                    run.error,
                )
                for run in runs
            ),
        )
        return format_html(
            "<table><tr><th>When</th><th>Event</th><th>Status</th><th>Actions done</th>"
            '<th>Error</th></tr>{}</table><p><a href="{}">All runs of this workflow →</a></p>',
            rows,
            self.runs_url(obj),
        )

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        data: WorkflowInput = form.workflow_input
        if change:
            saved = workflow_update(workflow=Workflow.objects.get(pk=obj.pk), data=data)
        else:
            saved = workflow_create(data=data)
        obj.pk, obj.version = saved.pk, saved.version
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Trigger types were saved by the service; nothing else to save."""

    def deleted_with(self, objects: QuerySet[Workflow]) -> list[QuerySet[Any]]:
        # workflow_delete deletes the endpoints of its webhook actions (and their log) too.
        return [Endpoint.objects.filter(workflow_link__workflow__in=objects)]

    def delete_one(self, obj: Workflow) -> None:
        workflow_delete(workflow=obj)


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
        # `position` is the next action to run: so many of the run's actions are done.
        return f"{obj.position} of {len(obj.actions)}"

    @admin.display(description="Action outcomes")
    def outcomes_pretty(self, obj: WorkflowRun) -> SafeString:
        return pretty_json(obj.outcomes)

    @admin.display(description="Event")
    def event_link(self, obj: WorkflowRun) -> SafeString:
        return format_html(
            '<a href="{}">{}</a> (<a href="{}">its runs</a>)',
            reverse("admin:events_app_event_change", args=[obj.event_id]),
            obj.event_id,
            event_runs_url(obj.event_id),
        )

    @admin.display(description="Explanation")
    def readable_explanation(self, obj: WorkflowRun) -> SafeString:
        leaves = obj.explanation.get("leaves", []) if isinstance(obj.explanation, dict) else []
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    leaf.get("path"),
                    _leaf_text(
                        {k: v for k, v in leaf.items() if k in {*SUBJECTS, "op"}}
                        | {"value": leaf.get("expected")}
                    ),
                    "missing" if leaf.get("missing") else json.dumps(leaf.get("actual")),
                    "✔" if leaf.get("matched") else "✘",
                )
                for leaf in leaves
            ),
        )
        return format_html(
            "<table><tr><th>Node</th><th>Condition</th><th>Actual</th><th>Matched</th></tr>"
            "{}</table>",
            rows,
        )
