"""Due work of ingested events: the claimer, the other half of automation.ingest.

The protocol (each step safe on many workers at once; nothing runs twice, nothing is
lost when a message is):

1. Ingestion writes an event with `automation_pending = true` when its type triggers
   an active workflow or active webhook subscriptions match it (then also with
   `is_delivered = false`): the due work is a flag of the event's own row, written by
   its insert, indexed by a partial index (no row of its own, no payload). After
   commit the request asks for one claim (`project.background.wake`, coalesced: most
   requests under load publish nothing).
2. `due_events_process()`, in ONE transaction:
   a. claim up to HERALD_AUTOMATION_BATCH_SIZE pending events, oldest first, and clear
      their flag (one UPDATE over a `SELECT … FOR UPDATE SKIP LOCKED`: two claimers
      never take the same event; a rollback restores the flag);
   b. evaluate the workflows their types trigger (automation.workflows.evaluation):
      the matched runs are inserted;
   c. fan out webhook deliveries (automation.webhooks.deliveries): one delivery per
      (event, matching active subscription), its payload the event as
      GET /events/{id} shows it, its `webhook-id` made here, once.
   The commit makes runs, deliveries and the cleared flag exist together.
3. After commit the runs go to their advance tasks and the first deliveries of each
   endpoint to send tasks (the sender's follow-on and dispatcher take the rest).
4. `due_events_drain()` repeats 2-3 while claims find work, holding the wake-up so
   that requests meanwhile publish nothing: the task a wake-up runs (`CLAIM_TASK`) and
   the periodic job `due.claim` (every second), which covers a lost wake-up, a broker
   that was down, a worker killed mid-claim.
5. A claim that came back full means a backlog: the claimer asks for one more run of
   itself as a helper (`project.background.wake_helper`, at most
   HERALD_AUTOMATION_CLAIMERS runs in all), which claims the next batches beside it
   (SKIP LOCKED keeps the batches disjoint) until a claim is not full. So a backlog
   is drained by as many workers as there are slots, and a trickle by one.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from automation.segments.services import segments_refresh_for_events
from automation.webhooks.deliveries import deliveries_fan_out
from automation.workflows.evaluation import events_evaluate_claimed
from automation.workflows.goals import goals_reach
from automation.workflows.runner import runs_hand_on
from automation.workflows.selectors import active_workflows
from events_app.models import Event
from project import background
from project.sql import fetch_all, model_columns, model_instance

# The claimer's task (automation.tasks), woken by name through project.background.
CLAIM_TASK = "automation.claim_due"
# A drain stops after this long and asks for another run (another worker may take it),
# so one task never holds a worker through a whole backlog.
DRAIN_SECONDS = 10.0
# The pause after a claim that was not full: long enough for a few requests to commit
# (fewer, bigger claims), short against the lag goal of evaluation (bench/README.md).
CLAIM_LINGER_SECONDS = 0.02

# PostgreSQL: lock the oldest pending events nobody holds (served by the partial index
# event_automation_pending_idx), clear their flag, return them. {ids}: optionally only
# these events. The last column: an instant Python cannot hold (stored before datetimes
# were validated; read pinned to the calendar's edge, project.postgresql).
_CLAIM_PG = """
UPDATE {table} AS e SET automation_pending = false
FROM (
    SELECT id FROM {table}
    WHERE automation_pending {ids}
    ORDER BY created_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AS claimed
WHERE e.id = claimed.id
RETURNING {columns},
    NOT (e.occurred_at >= '0001-01-01 00:00:00+00' AND e.occurred_at < '10000-01-01 00:00:00+00'
        AND e.created_at >= '0001-01-01 00:00:00+00' AND e.created_at < '10000-01-01 00:00:00+00')
"""
# SQLite (the embedded default): one writer at a time, so the UPDATE is the lock.
_CLAIM_SQLITE = """
UPDATE {table} SET automation_pending = 0
WHERE id IN (
    SELECT id FROM {table} WHERE automation_pending {ids}
    ORDER BY created_at, id LIMIT %(limit)s
)
RETURNING {columns}, 0
"""
_IDS = {
    "postgresql": "AND id = ANY(%(ids)s)",
    "sqlite": "AND id IN (SELECT value FROM json_each(%(ids)s))",
}
_OUT_OF_RANGE = (
    "its occurred_at or created_at lies outside the years 1-9999 in UTC (stored before "
    "datetimes were validated), so its conditions cannot be judged."
)


@functools.cache
def _claim_sql(vendor: str, by_ids: bool) -> str:
    table = connection.ops.quote_name(Event._meta.db_table)
    template = _CLAIM_PG if vendor == "postgresql" else _CLAIM_SQLITE
    alias = "e" if vendor == "postgresql" else table
    return template.format(
        table=table,
        ids=_IDS.get(vendor, _IDS["sqlite"]) if by_ids else "",
        columns=model_columns(Event, alias),
    )


def due_events_claim(
    *, limit: int, event_ids: Sequence[str] | None = None
) -> tuple[list[Event], dict[str, str]]:
    """Step 2a, in the caller's transaction: the claimed events (oldest first) and, by
    id, why any of them cannot be evaluated."""
    params: dict[str, object] = {"limit": limit}
    if event_ids is not None:
        if not event_ids:
            return [], {}
        params["ids"] = (
            list(event_ids) if connection.vendor == "postgresql" else json.dumps(list(event_ids))
        )
    rows = fetch_all(_claim_sql(connection.vendor, event_ids is not None), params)
    events = [model_instance(Event, row[:-1]) for row in rows]
    problems = {e.id: _OUT_OF_RANGE for e, row in zip(events, rows, strict=True) if row[-1]}
    events.sort(key=lambda e: (e.created_at, e.id))
    return events, problems


@dataclass(slots=True)
class DueOutcome:
    claimed: int = 0
    run_ids: list[str] = field(default_factory=list)  # runs with actions to run
    delivery_ids: list[str] = field(default_factory=list)


def due_events_process(
    *,
    event_ids: Sequence[str] | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> DueOutcome:
    """Claim pending events and do their due work in one transaction (step 2 of the
    module's protocol): the runs are created, not started; the deliveries are handed
    to send tasks after commit. `event_ids`: only these (if still pending)."""
    now = now or timezone.now()
    limit = limit or int(settings.HERALD_AUTOMATION_BATCH_SIZE)
    with transaction.atomic():
        events, problems = due_events_claim(limit=limit, event_ids=event_ids)
        if not events:
            return DueOutcome()
        workflows = active_workflows()
        # Goals before anything locks customers (automation.workflows.goals): runs these
        # events convert are locked first, and never get the runs these events start.
        goals_reach(events=events, problems=problems, workflows=workflows, now=now)
        # Segments first, in the claim's transaction: a workflow's segment leaf sees the
        # entries and exits these events caused, and a rollback repeats both.
        segments_refresh_for_events(events=events)
        run_ids = events_evaluate_claimed(
            events=events, problems=problems, now=now, active=workflows
        )
        # Only events still waiting for their deliveries: one marked delivered (PATCH)
        # before the claim wants none.
        waiting = [e for e in events if not e.is_delivered]
        delivery_ids = deliveries_fan_out(events=waiting, now=now) if waiting else []
    return DueOutcome(len(events), run_ids, delivery_ids)


def due_events_process_and_run(
    *, event_ids: Sequence[str] | None = None, limit: int | None = None
) -> DueOutcome:
    """`due_events_process`, then the new runs' actions handed on (step 3)."""
    outcome = due_events_process(event_ids=event_ids, limit=limit)
    runs_hand_on(outcome.run_ids)
    return outcome


def due_events_drain(now: datetime | None = None, *, slot: int = 0) -> int:
    """Claim until nothing is due (step 4); returns how many events were claimed. `now`
    is the periodic job's tick, unused: each claim reads the clock. `slot`: a helper's
    slot (step 5), 0 for the run a wake-up or the periodic job started.

    1. Claim while claims find work, pausing CLAIM_LINGER_SECONDS after a claim that
       was not full, so a trickle of requests gathers into batches. The wake-up stays
       taken meanwhile: requests under load publish nothing.
    2. After a full claim, ask for a helper (step 5 of the module's protocol).
    3. When a claim finds nothing: give the wake-up back (`wake_taken`), then claim once
       more. That claim sees every request that found the wake-up still taken (each
       committed before trying to take it); stop when it finds nothing too.
    4. After DRAIN_SECONDS: give the wake-up back and ask for a fresh run (any worker
       may take it), so one task never holds a worker through a whole backlog.
    """
    if slot:
        return _helper_drain(slot)
    batch = int(settings.HERALD_AUTOMATION_BATCH_SIZE)
    deadline = time.monotonic() + DRAIN_SECONDS
    total = 0
    given_back = False
    while True:
        claimed = due_events_process_and_run(limit=batch).claimed
        total += claimed
        if not claimed:
            if given_back:
                return total
            background.wake_taken(CLAIM_TASK)
            given_back = True
            continue
        given_back = False
        if time.monotonic() > deadline:
            background.wake_taken(CLAIM_TASK)
            background.wake(CLAIM_TASK)
            return total
        if claimed < batch:
            time.sleep(CLAIM_LINGER_SECONDS)
        else:
            _helper_ask()


def _helper_ask() -> None:
    background.wake_helper(
        CLAIM_TASK,
        limit=int(settings.HERALD_AUTOMATION_CLAIMERS),
        hold_seconds=2 * DRAIN_SECONDS,
    )


def _helper_drain(slot: int) -> int:
    """A helper's run: claim full batches beside the others until a claim is not full
    (the backlog is gone: the run holding the wake-up takes the trickle) or
    DRAIN_SECONDS pass; then give the slot back. Asks for the next helper itself, so a
    deep backlog fills every slot without waiting for the first claimer."""
    batch = int(settings.HERALD_AUTOMATION_BATCH_SIZE)
    deadline = time.monotonic() + DRAIN_SECONDS
    total = 0
    try:
        while True:
            claimed = due_events_process_and_run(limit=batch).claimed
            total += claimed
            if claimed < batch or time.monotonic() > deadline:
                return total
            _helper_ask()
    finally:
        background.wake_release(CLAIM_TASK, slot)
