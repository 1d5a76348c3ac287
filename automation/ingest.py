"""What ingestion needs to know from automation, read fresh for every store.

Every stored batch -- and every single POST /events -- asks two questions: which
webhook subscriptions are active (issue 4: their deliveries are created in the
ingest transaction) and whether this process's active-workflow cache is current
(issue 6: the stamp of automation.workflows.selectors). As ORM queries they cost
about 1.9 ms of wall time per single POST (query compilation in Python and two or
three round trips), more than the insert itself. Here they are plain SQL rows that
ingestion appends to the read it makes anyway (events_app.ingestion
`_read_references`: no round trip of their own), or read alone in one statement
(`ingest_facts_read`); on PostgreSQL both are prepared after a few uses
(project.sql.fetch_all).

Nothing here is cached: a webhook or workflow created, changed or deactivated in
another process takes effect for the very next ingest.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from automation.webhooks.models import Endpoint
from automation.workflows.models import Workflow
from project.sql import fetch_all

# (number of workflows, latest updated_at) as text: the same SQL gives the same text
# on every path, so a stamp read by ingestion equals one read by a worker.
WorkflowStamp = tuple[str, str | None]

STAMP = "workflows"
SUBSCRIPTION = "subscription"
FACT_KINDS = frozenset({STAMP, SUBSCRIPTION})  # the first column of the rows


@dataclass(frozen=True, slots=True)
class IngestFacts:
    # Active subscription endpoint id -> its event type ids (empty = every type).
    subscriptions: dict[str, set[str]]
    workflow_stamp: WorkflowStamp

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[Any, ...]]) -> IngestFacts:
        """From the rows of `facts_sql` (only their first three columns are read)."""
        subscriptions: dict[str, set[str]] = {}
        stamp: WorkflowStamp = ("0", None)
        for kind, first, second, *_ in rows:
            if kind == STAMP:
                stamp = (first, second)
                continue
            types = subscriptions.setdefault(first, set())
            if second is not None:
                types.add(second)
        return cls(subscriptions, stamp)


@functools.cache
def _parts() -> tuple[tuple[str, str], tuple[str, str]]:
    """The stamp and the subscriptions as (select list of 3 columns, the rest), built
    from the models."""
    through = Endpoint.event_types.through._meta
    endpoint_column = through.get_field("endpoint").column
    type_column = through.get_field("eventtype").column
    # One indexed aggregate over a small table: every create, update, delete or
    # (de)activation of a workflow changes the count or the latest updated_at.
    stamp = (
        f"SELECT '{STAMP}', CAST(count(*) AS TEXT), CAST(max(updated_at) AS TEXT)",
        f"FROM {Workflow._meta.db_table}",
    )
    # Served by the partial index endpoint_active_kind_idx.
    subscriptions = (
        f"SELECT '{SUBSCRIPTION}', e.id, t.{type_column}",
        f"FROM {Endpoint._meta.db_table} e "
        f"LEFT JOIN {through.db_table} t ON t.{endpoint_column} = e.id "
        f"WHERE e.kind = '{Endpoint.Kind.SUBSCRIPTION.value}' AND e.active",
    )
    return stamp, subscriptions


@functools.cache
def facts_sql(width: int = 3) -> str:
    """Both reads as one UNION ALL of `width` columns (the rest NULL), to append to
    another read with that many columns."""
    padding = ", NULL" * (width - 3)
    return " UNION ALL ".join(f"{select}{padding} {rest}" for select, rest in _parts())


def ingest_facts_read() -> IngestFacts:
    """The active webhook subscriptions and the workflow stamp, in one statement."""
    return IngestFacts.of_rows(fetch_all(facts_sql(), []))


def workflow_stamp_read() -> WorkflowStamp:
    """The workflow stamp alone (for callers that are not ingesting)."""
    ((_, count, latest),) = fetch_all(" ".join(_parts()[0]), [])
    return count, latest
