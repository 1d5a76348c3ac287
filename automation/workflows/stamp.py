"""The workflow stamp: has the workflow table changed since this process read it?

(number of workflows, latest updated_at) as text: the same SQL gives the same text
on every path, so a stamp read by ingestion (with its references, automation.ingest)
equals one read here by a worker. One indexed aggregate over a small table: every
create, update, delete or (de)activation of a workflow changes the count or the
latest updated_at.
"""

from __future__ import annotations

import functools

from automation.workflows.models import Workflow
from project.sql import fetch_all, table_stamp_parts

WorkflowStamp = tuple[str, str | None]


@functools.cache
def stamp_sql_parts() -> tuple[str, str]:
    """(select list of its 2 columns, the rest of the statement), built from the model."""
    return table_stamp_parts(Workflow)


def workflow_stamp_read() -> WorkflowStamp:
    """The workflow stamp alone (for callers that are not ingesting)."""
    columns, rest = stamp_sql_parts()
    ((count, latest),) = fetch_all(f"SELECT {columns} {rest}", [])
    return count, latest
