"""Admin for workflows: the rule builder, why (not), and the signing secrets.

Workflows are saved through the same services as the API
(automation.workflows.services), so a tree that the API refuses is refused here too,
with each message shown at the builder's node and on its field, prefixed by the
node's path. The condition tree is also shown as readable nested text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from automation.webhooks.models import Endpoint
from automation.webhooks.services import SECRET_ROTATION_OVERLAP
from automation.workflows.admin.form import WorkflowAdminForm
from automation.workflows.admin.render import render_tree, stats_html
from automation.workflows.admin.why import recent_events, why, workflows_triggered_by
from automation.workflows.models import Workflow, WorkflowEndpoint, WorkflowRun
from automation.workflows.services import (
    WorkflowInput,
    workflow_create,
    workflow_delete,
    workflow_set_active,
    workflow_update,
    workflow_webhook_secrets_reveal,
    workflow_webhook_secrets_rotate,
)
from automation.workflows.simulation.admin import simulate_view
from automation.workflows.stats import workflow_stats
from events_app.selectors import event_get
from project.admin.deletion import CascadeDeleteAdmin
from project.errors import HeraldError

RECENT_RUNS = 20
EVENT_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
# Secrets belong to endpoints: whoever may change endpoints may see and rotate them.
SECRETS_PERMISSION = "automation.change_endpoint"
VIEW_EVENTS = "events_app.view_event"


@admin.register(Workflow)
class WorkflowAdmin(CascadeDeleteAdmin):
    form = WorkflowAdminForm
    change_form_template = "admin/automation/workflow/change_form.html"
    # The links are bookkeeping; the endpoints they name are counted (deleted_with).
    uncounted_models = (WorkflowEndpoint,)
    list_display = ["name", "triggers", "active", "reentry", "version", "updated_at", "runs_link"]
    list_filter = ["active"]
    search_fields = ["name"]  # workflows number in the hundreds: a substring search is fine
    ordering = ["-created_at"]
    actions = ["activate", "deactivate"]
    readonly_fields = [
        "id",
        "readable_conditions",
        "version",
        "stats_table",
        "recent_runs",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "name",
                    "trigger_event_types",
                    "trigger_segments",
                    "active",
                    "reentry",
                    "delivery_policy",
                    "trigger_on_merged_events",
                    "version",
                ]
            },
        ),
        ("Conditions", {"fields": ["readable_conditions", "conditions"]}),
        ("Actions", {"fields": ["actions"]}),
        ("Goal", {"fields": ["goal_event_type", "goal_conditions"]}),
        ("Stats", {"fields": ["stats_table"]}),
        ("Run history", {"fields": ["recent_runs", "updated_at"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "trigger_event_types",
                    "trigger_segments",
                    "active",
                    "reentry",
                    "delivery_policy",
                    "trigger_on_merged_events",
                ]
            },
        ),
        ("Conditions", {"fields": ["conditions"]}),
        ("Actions", {"fields": ["actions"]}),
        ("Goal", {"fields": ["goal_event_type", "goal_conditions"]}),
    ]

    class Media:
        css = {"all": ("automation/admin.css",)}
        js = ("automation/secrets.js",)

    def get_fieldsets(self, request: HttpRequest, obj: Workflow | None = None) -> Any:
        # A new workflow has no id, version or runs yet: the add page asks only for input.
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return super().get_queryset(request).prefetch_related("trigger_event_types")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("why/", wrap(self.why_event_view), name="automation_workflow_why_event"),
            path("<str:object_id>/why/", wrap(self.why_view), name="automation_workflow_why"),
            path(
                "<str:object_id>/simulate/",
                wrap(lambda request, object_id: simulate_view(self, request, object_id)),
                name="automation_workflow_simulate",
            ),
            path(
                "<str:object_id>/secrets/reveal/",
                wrap(require_POST(self.reveal_secrets_view)),
                name="automation_workflow_reveal_secrets",
            ),
            path(
                "<str:object_id>/secrets/rotate/",
                wrap(require_POST(self.rotate_secrets_view)),
                name="automation_workflow_rotate_secrets",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        endpoints = list(
            Endpoint.objects.filter(workflow_link__workflow_id=object_id).order_by("pk")
        )
        extra_context = {
            **(extra_context or {}),
            "workflow_endpoints": endpoints,
            "may_see_secrets": request.user.has_perm(SECRETS_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # ------------------------------------------------------------ why (not)

    @staticmethod
    def _event_id(request: HttpRequest) -> str:
        """The ?event= id as typed, or "" when it cannot be an id at all (NUL, too long)."""
        event_id = request.GET.get("event", "").strip()
        return event_id if EVENT_ID.fullmatch(event_id) else ("?" if event_id else "")

    def why_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One workflow against the event given (?event=…), or a choice of recent events."""
        workflow = get_object_or_404(Workflow, pk=object_id)
        if not self.has_view_permission(request, workflow):
            raise PermissionDenied
        event_id = self._event_id(request)
        answers, problem = [], ""
        if event_id:
            try:
                event = event_get(event_id=event_id)
            except HeraldError:
                problem = f"No event with id '{event_id}'."
            else:
                if not request.user.has_perm(VIEW_EVENTS):
                    raise PermissionDenied
                answers = why(event=event, workflows=[workflow])
        return self._why_page(
            request,
            title=f"Why (not)? {workflow.name}",
            workflow=workflow,
            event_id=event_id,
            answers=answers,
            problem=problem,
            recent=recent_events(workflow) if not event_id else [],
        )

    def why_event_view(self, request: HttpRequest) -> HttpResponse:
        """Every workflow its type triggers, tested against one event (?event=…)."""
        # The page shows the event's values and its customer: both must be viewable.
        if not (self.has_view_permission(request) and request.user.has_perm(VIEW_EVENTS)):
            raise PermissionDenied
        event_id = self._event_id(request)
        try:
            event = event_get(event_id=event_id)
        except HeraldError:
            return self._why_page(
                request, title="Why (not)?", event_id=event_id, problem=f"No event '{event_id}'."
            )
        workflows = workflows_triggered_by(event)
        return self._why_page(
            request,
            title=f"Why (not)? Event {event.pk}",
            event=event,
            event_id=event.pk,
            answers=why(event=event, workflows=workflows),
            untriggered=Workflow.objects.count() - len(workflows),
        )

    def _why_page(self, request: HttpRequest, **context: Any) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "changelist_url": reverse("admin:automation_workflow_changelist"),
            "now": timezone.now(),
            **context,
        }
        return TemplateResponse(request, "admin/automation/workflow/why.html", context)

    # ------------------------------------------------------------ secrets

    def _secret_owner(self, request: HttpRequest, object_id: str) -> Workflow:
        workflow = get_object_or_404(Workflow, pk=object_id)
        if not (
            self.has_view_permission(request, workflow)
            and request.user.has_perm(SECRETS_PERMISSION)
        ):
            raise PermissionDenied
        return workflow

    def reveal_secrets_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signing secrets in full, on an explicit POST; recorded in the audit log."""
        workflow = self._secret_owner(request, object_id)
        secrets = workflow_webhook_secrets_reveal(workflow=workflow)
        return self._secrets_page(request, workflow, secrets, rotated=False)

    def rotate_secrets_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        workflow = self._secret_owner(request, object_id)
        secrets = workflow_webhook_secrets_rotate(workflow=workflow)
        return self._secrets_page(request, workflow, secrets, rotated=True)

    def _secrets_page(
        self, request: HttpRequest, workflow: Workflow, secrets: dict[str, str], *, rotated: bool
    ) -> HttpResponse:
        urls = dict(Endpoint.objects.filter(pk__in=secrets).values_list("pk", "url"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": workflow,
            "title": "Signing secrets rotated" if rotated else "Signing secrets",
            "secrets": [(pk, urls.get(pk, ""), secret) for pk, secret in secrets.items()],
            "rotated": rotated,
            "overlap_until": timezone.now() + SECRET_ROTATION_OVERLAP,
            "change_url": reverse("admin:automation_workflow_change", args=[workflow.pk]),
        }
        response = TemplateResponse(request, "admin/automation/workflow/secrets.html", context)
        add_never_cache_headers(response)
        return response

    # ------------------------------------------------------------ list and actions

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

    @admin.display(description="Runs, conversions and outcomes")
    def stats_table(self, obj: Workflow) -> SafeString:
        if not obj.pk:
            return mark_safe("—")
        return stats_html(workflow_stats(workflow=obj))

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
                    reverse("admin:events_app_event_change", args=[run.event_id])
                    if run.event_id
                    else "#",
                    run.event_id or json.dumps(run.trigger),
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

    # ------------------------------------------------------------ saving

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
