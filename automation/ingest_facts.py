"""What ingestion needs to know from automation, read in one round trip per store.

Every stored batch -- and every single POST /events -- asks two questions: which
webhook subscriptions are active (issue 4: their deliveries are created in the
ingest transaction) and whether this process's active-workflow cache is current
(issue 6: the stamp of automation.workflow_selectors). As two ORM queries they
cost about 1.9 ms of wall time per single POST (query compilation in Python and
two or three round trips), more than the insert itself; as one raw statement,
prepared by PostgreSQL after a few uses (project.db.fetch_all), well under a
tenth of that.

Nothing here is cached: a webhook or workflow created, changed or deactivated in
another process takes effect for the very next ingest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from automation.models import Endpoint, Workflow
from project.db import fetch_all

WorkflowStamp = tuple[int, datetime | None]


@dataclass(frozen=True, slots=True)
class IngestFacts:
    # Active subscription endpoint id -> its event type ids (empty = every type).
    subscriptions: dict[str, set[str]]
    workflow_stamp: WorkflowStamp


@functools.cache
def _statements() -> tuple[str, str]:
    """(facts SQL, stamp-only SQL), built from the models' metadata."""
    through = Endpoint.event_types.through._meta
    endpoint_column = through.get_field("endpoint").column
    type_column = through.get_field("eventtype").column
    # The stamp: one indexed aggregate over a small table; every create, update,
    # delete or (de)activation of a workflow changes the count or the latest
    # updated_at, in any process.
    stamp = f"SELECT NULL, NULL, count(*), max(updated_at) FROM {Workflow._meta.db_table}"  # noqa: S608
    # Served by the partial index endpoint_active_kind_idx. The NULL columns of this
    # branch take their types from the stamp's.
    subscriptions = (
        f"SELECT e.id, t.{type_column}, NULL, NULL "  # noqa: S608
        f"FROM {Endpoint._meta.db_table} e "
        f"LEFT JOIN {through.db_table} t ON t.{endpoint_column} = e.id "
        "WHERE e.kind = %s AND e.active"
    )
    return f"{stamp} UNION ALL {subscriptions}", stamp


def _stamp_of(count: int, latest: Any) -> WorkflowStamp:
    if isinstance(latest, str):
        # A raw SQLite cursor (the embedded default) returns text; its datetimes are UTC.
        parsed = parse_datetime(latest)
        latest = parsed.replace(tzinfo=UTC) if parsed and parsed.tzinfo is None else parsed
    return int(count), latest


def ingest_facts_read() -> IngestFacts:
    """The active webhook subscriptions and the workflow stamp, in one statement."""
    sql, _ = _statements()
    rows = fetch_all(sql, [Endpoint.Kind.SUBSCRIPTION.value])
    subscriptions: dict[str, set[str]] = {}
    stamp: WorkflowStamp = (0, None)
    for endpoint_id, type_id, count, latest in rows:
        if endpoint_id is None:
            stamp = _stamp_of(count, latest)
            continue
        types = subscriptions.setdefault(endpoint_id, set())
        if type_id is not None:
            types.add(type_id)
    return IngestFacts(subscriptions, stamp)


def workflow_stamp_read() -> WorkflowStamp:
    """The workflow stamp alone (for callers that are not ingesting)."""
    _, sql = _statements()
    ((_, _, count, latest),) = fetch_all(sql, [])
    return _stamp_of(count, latest)
