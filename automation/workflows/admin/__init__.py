"""Admin for workflows (the rule builder, why (not), secrets) and their runs.

`render_tree` and the builder's fields (`builder.ConditionTreeField`) are shared with
the segments' admin.
"""

from __future__ import annotations

from automation.workflows.admin.render import render_tree
from automation.workflows.admin.runs import WorkflowRunAdmin, event_runs_url
from automation.workflows.admin.workflows import WorkflowAdmin

__all__ = ["WorkflowAdmin", "WorkflowRunAdmin", "event_runs_url", "render_tree"]
