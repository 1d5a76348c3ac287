"""Simulate before you activate: the admin page of a workflow's simulation.

The workflow page links here; a period (two datetime inputs, UTC) is posted, the
simulation is made by the service (automation.workflows.simulation.services: the
same as POST /workflows/simulate), and the page shows its result: would run, events
considered, the per-leaf funnel drawn as bars, and sample runs explained the way the
"why (not)" pages explain them. A background simulation's page refreshes itself
until the result is there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from automation.workflows.admin.render import explanation_table, leaf_text
from automation.workflows.engine import leaves_of
from automation.workflows.models import Workflow
from automation.workflows.selectors import LoadedWorkflow
from automation.workflows.simulation.models import Simulation
from automation.workflows.simulation.services import simulation_create
from project.errors import HeraldError

INPUT_FORMAT = "%Y-%m-%dT%H:%M"
REFRESH_SECONDS = 3


def _instant(text: str) -> datetime:
    """A datetime-local input's value, read as UTC (the page says so)."""
    return datetime.strptime(text.strip()[:16], INPUT_FORMAT).replace(tzinfo=UTC)


def _leaf_words(workflow: Workflow) -> dict[str, str]:
    """Each leaf's path -> the condition as the builder's sentence."""
    compiled = LoadedWorkflow.of(workflow, type_ids={}).compiled
    words = {}
    for leaf in leaves_of(compiled.root):
        node: dict[str, Any] = {leaf.subject: leaf.target, "op": leaf.op_name}
        if leaf.operator.takes_value:
            node["value"] = leaf.expected
        words[leaf.path] = leaf_text(node)
    return words


def simulate_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the form (and ?simulation=… its result); POST: make a simulation."""
    workflow = get_object_or_404(Workflow, pk=object_id)
    if not model_admin.has_view_permission(request, workflow):
        raise PermissionDenied
    url = reverse("admin:automation_workflow_simulate", args=[workflow.pk])
    now = timezone.now().astimezone(UTC)
    form = {
        "from": request.POST.get("from") or (now - timedelta(days=30)).strftime(INPUT_FORMAT),
        "to": request.POST.get("to") or now.strftime(INPUT_FORMAT),
    }
    problem = ""
    if request.method == "POST":
        try:
            made = simulation_create(
                start=_instant(form["from"]), end=_instant(form["to"]), workflow_id=workflow.pk
            )
        except ValueError:
            problem = "Give both dates as shown (YYYY-MM-DD hh:mm, UTC)."
        except HeraldError as exc:
            problem = str(exc)
        else:
            return HttpResponseRedirect(f"{url}?simulation={made.pk}")
    simulation: Simulation | None = None
    wanted = request.GET.get("simulation", "")
    if wanted and wanted.isalnum():
        simulation = Simulation.objects.filter(pk=wanted, workflow=workflow).first()
    result = simulation.result if simulation and simulation.result else None
    words = _leaf_words(workflow)
    funnel = [
        {**leaf, "words": words.get(leaf["path"], leaf["path"])}
        for leaf in (result or {}).get("leaves", [])
    ]
    samples = [
        {**sample, "table": explanation_table(sample["explanation"].get("leaves", []))}
        for sample in (result or {}).get("samples", [])
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"Simulate: {workflow.name}",
        "workflow": workflow,
        "form": form,
        "problem": problem,
        "simulation": simulation,
        "result": result,
        "funnel": funnel,
        "samples": samples,
        "refresh": REFRESH_SECONDS if simulation and simulation.status == "running" else 0,
        "progress_percent": round((simulation.progress if simulation else 0) * 100),
    }
    return TemplateResponse(request, "admin/automation/workflow/simulate.html", context)
