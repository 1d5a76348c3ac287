"""The ingest hook: how a layer above events_app takes part in storing events.

events_app never imports the layers above it. Automation registers one hook
(automation.ingest, from AutomationConfig.ready()) and ingestion calls it at
fixed points of the path of an event:

1. `facts_sql`: rows the hook needs to know, appended to ingestion's one
   reference read (no round trip of their own); `facts_of_rows` turns them into
   the hook's facts (`facts_read` reads them alone when events are stored
   without that read).
2. `plan(events, facts)`: before the insert, per event the flags the event row is
   written with (its due work: the hook writes no rows of its own at ingest).
3. `handover(events)`: after the insert, with the events stored (on commit of the
   caller's transaction if there is one: the hook defers its own side effects).
4. `event_marked_delivered(event)`: PATCH is_delivered=true, inside its transaction.

With no hook registered, events are stored with their defaults and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from events_app.models import Event
from events_app.payloads import EVENT_INPUT_COLUMNS
from project.ids import new_public_id

# The columns a PreparedEvent carries into the insert (events_app.ingest_pg).
PREPARED_COLUMNS = (
    *EVENT_INPUT_COLUMNS,
    # Written with the row, not by an UPDATE after the insert: an UPDATE would rewrite
    # every row just inserted (automation_pending is in a partial index's predicate,
    # so not even a HOT update) and need a transaction around the two statements.
    "automation_pending",
    "is_delivered",
    "depth",
    # The sending API client (the admin's live page filters by it).
    "api_client_id",
)


@dataclass(slots=True)
class PreparedEvent:
    """An event that passed every check, ready to insert (plain values, no model instance:
    building 1000 Django model instances costs more than inserting them)."""

    index: int
    event_type_id: str
    customer_id: str
    external_id: str | None
    secondary_external_id: str | None
    data: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    records: list[tuple[str, str]] = field(default_factory=list)
    id: str = field(default_factory=new_public_id)
    # Written with the row by the insert (no UPDATE after it): set from the hook's plan,
    # and by follow-up events (automation's emit_event action sets depth).
    automation_pending: bool = False
    is_delivered: bool = True
    depth: int = 0
    # The API client that sent it; None when not sent through the API.
    api_client_id: int | None = None
    # The external id of a customer that does not exist yet: the insert creates it
    # (with `customer_id`, allotted by ingestion) only if this event is stored. With
    # `new_customer_anonymous` it is the anonymous id of an anonymous customer instead
    # (no external id). One field for both, so "the customer is new" stays one test.
    new_customer: str | None = None
    new_customer_anonymous: bool = False

    def as_event(self) -> Event:
        """The row the insert writes, as an unsaved instance (for the portable insert
        and for payloads, which are then built without reading the row back)."""
        return Event(**{column: getattr(self, column) for column in PREPARED_COLUMNS})


@dataclass(slots=True)
class EventPlan:
    """What a hook plans for one event before the insert."""

    automation_pending: bool = False
    is_delivered: bool = True


class IngestHook(Protocol):
    """The interface; automation.ingest implements it."""

    def facts_sql(self, width: int) -> str:
        """SQL rows of `width` columns to UNION ALL with the reference read; the first
        column tags each row and never equals one of ingestion's own tags."""
        ...

    def facts_of_rows(self, rows: Iterable[tuple[Any, ...]]) -> Any: ...

    def facts_read(self) -> Any:
        """The facts in one statement of their own."""
        ...

    def plan(self, events: Sequence[PreparedEvent], facts: Any) -> dict[str, EventPlan]:
        """Event id -> its plan, for the events with anything planned."""
        ...

    def handover(self, events: Sequence[PreparedEvent]) -> None: ...

    def event_marked_delivered(self, event: Event) -> None: ...


_registered: list[IngestHook] = []


def ingest_hook_register(hook: IngestHook | None) -> IngestHook | None:
    """Register the one ingest hook (None: none); returns the one it replaces."""
    previous = _registered[0] if _registered else None
    _registered[:] = [hook] if hook is not None else []
    return previous


def ingest_hook() -> IngestHook | None:
    return _registered[0] if _registered else None


def ingest_plan_apply(prepared: Sequence[PreparedEvent], facts: Any) -> None:
    """Ask the hook for its plan and write it onto the prepared events."""
    hook = ingest_hook()
    if hook is None:
        return
    if facts is None:
        facts = hook.facts_read()
    by_id = {p.id: p for p in prepared}
    for event_id, plan in hook.plan(prepared, facts).items():
        event = by_id[event_id]
        event.automation_pending = plan.automation_pending
        event.is_delivered = plan.is_delivered
