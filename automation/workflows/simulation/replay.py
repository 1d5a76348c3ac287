"""Replaying a workflow over stored events: the decisions live evaluation would make.

The events of the trigger types (and of the types that count conditions count) are
streamed in (occurred_at, id) order in keyset pages, so memory stays constant
whatever the period. Each triggered event in the period is evaluated with the pure
engine against the facts as they were at its time:

* frequency ("did T at least N times within W"): per (type, customer) the times of
  the streamed events of T still inside the longest window of T -- the stream starts
  that window before the period, so no per-event query is made. An event counts its
  predecessors in (occurred_at, id) order and itself (live evaluation, at the event's
  time, counts the events stored with occurred_at <= now);
* first-time: the event is the customer's first of its type when no event of the
  type came before it (one query per page for the customers not met yet);
* re-entry: the workflow's policy over the runs replayed so far and, for a saved
  workflow, its runs created before the period (one query per page for the customers
  not met yet); a run's time is its event's occurred_at;
* caps (a delivery policy, automation.workflows.policies.spec): the run's actions
  counted per customer in each cap's rolling window over the replayed runs, plus the
  actions the policy's ledger (PolicyUsage) recorded for the customer before the
  event's time -- other workflows' real usage, and this workflow's own before the
  period (inside it, its replayed runs stand for its real ones). One query per page
  for the customers not met yet.

Evaluation time (`now` of `within_last` and friends) is the event's occurred_at.
The customer's fields and segment memberships are read as they are now (the
history of neither is kept); `notes` in the result say so when the tree reads them.
Nothing is written here: callers decide what a replayed run becomes.
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db.models import Max, Q

from automation.segments.selectors import current_segment_refs
from automation.workflows.engine import CountKey, EventContext, Leaf, evaluate, leaves_of
from automation.workflows.evaluation import EVALUATION_ERROR
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.models import PolicyUsage
from automation.workflows.policies.spec import PolicySpec, cap_block_reason
from automation.workflows.selectors import LoadedWorkflow, _customer_rows
from events_app.models import Event, EventType, PropertyDefinition, PropertyRecord

PAGE_SIZE = 5000
MAX_SAMPLES = 50

_COLUMNS = ("id", "event_type_id", "customer_id", "occurred_at", "created_at")
_EVENT_COLUMNS = ("external_id", "secondary_external_id", "data", "depth")


class Row(NamedTuple):
    id: str
    event_type_id: str
    customer_id: str
    occurred_at: datetime
    created_at: datetime | None = None
    external_id: str | None = None
    secondary_external_id: str | None = None
    data: Any = None
    depth: int = 0


def _row(values: tuple[Any, ...], full: bool) -> Row:
    if full:
        return Row(*values)
    event_id, type_id, customer_id, occurred_at = values
    return Row(event_id, type_id, customer_id, occurred_at)


@dataclass
class ReplaySpec:
    """What to replay: the compiled workflow, its triggers, and what seeds its history."""

    workflow: LoadedWorkflow
    trigger_type_ids: frozenset[str]
    # A saved workflow's id: its runs before the period count for re-entry.
    saved_workflow_id: str | None = None
    policy: PolicySpec | None = None
    # The stored policy's id: its ledger's real usage counts toward the caps.
    policy_id: str | None = None
    # Only events ingested before this (a backfill's watermark).
    created_before: datetime | None = None


@dataclass
class ReplayedRun:
    """A run the replay decided on (after re-entry); `capped` the first cap's reason."""

    row: Row
    explanation: dict[str, Any]
    capped: str | None = None


@dataclass
class Page:
    """What one page of the stream gave: its runs, and where the stream stands."""

    runs: list[ReplayedRun]
    considered: int
    last_occurred_at: datetime
    last_id: str


@dataclass
class Tally:
    """The simulation's answer, accumulated page by page."""

    events_considered: int = 0
    would_run: int = 0
    capped: int = 0
    leaves: dict[str, list[int]] = field(default_factory=dict)  # path -> [evaluated, matched]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, page: Page) -> None:
        self.events_considered += page.considered
        self.would_run += len(page.runs)
        for run in page.runs:
            if run.capped:
                self.capped += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(
                    {
                        "event_id": run.row.id,
                        "customer_id": run.row.customer_id,
                        "occurred_at": _iso(run.row.occurred_at),
                        "capped": run.capped,
                        "explanation": run.explanation,
                    }
                )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Replay:
    """One pass over [start, end); iterate `pages()` (or resume it after an event)."""

    def __init__(self, spec: ReplaySpec, *, start: datetime, end: datetime) -> None:
        self.spec = spec
        self.start, self.end = start, end
        compiled = spec.workflow.compiled
        self.leaves: list[Leaf] = leaves_of(compiled.root)
        self.leaf_counts: dict[str, list[int]] = {leaf.path: [0, 0] for leaf in self.leaves}
        subjects = {leaf.subject for leaf in self.leaves}
        self.reads_event = "event" in subjects
        self.reads_properties = "property" in subjects
        self.reads_customer = "customer" in subjects
        self.reads_segments = compiled.reads_segments
        # Frequency: the longest window per counted type; the stream starts that far back.
        self.count_keys: list[CountKey] = sorted(
            compiled.count_keys, key=lambda k: (k.event_type_id, k.within)
        )
        self.longest: dict[str, timedelta] = {}
        for key in self.count_keys:
            self.longest[key.event_type_id] = max(
                key.within, self.longest.get(key.event_type_id, timedelta(0))
            )
        self.lookback = max(self.longest.values(), default=timedelta(0))
        self.stream_types = sorted(spec.trigger_type_ids | set(self.longest))
        self.times: dict[tuple[str, str], deque[datetime]] = defaultdict(deque)
        # First-time: per type, the customers known to have had one before the current event.
        self.first_types = sorted(compiled.first_types & spec.trigger_type_ids)
        self.seen: dict[str, set[str]] = {t: set() for t in self.first_types}
        self.checked: dict[str, set[str]] = {t: set() for t in self.first_types}
        # Re-entry and caps.
        self.reentry = spec.workflow.reentry
        self.period = (
            timedelta(seconds=spec.workflow.period_seconds)
            if spec.workflow.period_seconds is not None
            else None
        )
        self.last_run: dict[str, datetime | None] = {}
        self.cap_times: dict[tuple[int, str], deque[datetime]] = defaultdict(deque)
        # Real usage under the policy: per (cap index, customer) the ledger's times.
        self.real_times: dict[tuple[int, str], list[datetime]] = {}
        self.real_seeded: set[str] = set()
        self.type_keys = dict(EventType.objects.values_list("id", "key"))
        self.declared: dict[str, dict[str, str]] = defaultdict(dict)
        if self.reads_properties:
            for type_id, prop, value_type in PropertyDefinition.objects.filter(
                event_type_id__in=spec.trigger_type_ids
            ).values_list("event_type_id", "property_id", "value_type"):
                self.declared[type_id][prop] = value_type

    # ------------------------------------------------------------ the stream

    def _page(self, after: tuple[datetime, str] | None) -> list[Row]:
        # Before the period only the counted types are needed (for their windows).
        in_window = Q(occurred_at__gte=self.start) | Q(event_type_id__in=sorted(self.longest))
        queryset = Event.objects.filter(
            in_window,
            event_type_id__in=self.stream_types,
            occurred_at__gte=self.start - self.lookback,
            occurred_at__lt=self.end,
        )
        if self.spec.created_before is not None:
            queryset = queryset.filter(created_at__lt=self.spec.created_before)
        if after is not None:
            # The plain bound lets the (occurred_at, id) index start the page at its key.
            queryset = queryset.filter(
                Q(occurred_at__gt=after[0]) | Q(occurred_at=after[0], id__gt=after[1]),
                occurred_at__gte=after[0],
            )
        columns = _COLUMNS + (_EVENT_COLUMNS if self.reads_event else ())
        if not self.reads_event:
            # created_at is an event field: read only when the tree reads the event.
            columns = tuple(c for c in columns if c != "created_at")
        return [
            _row(values, self.reads_event)
            for values in queryset.order_by("occurred_at", "id").values_list(*columns)[:PAGE_SIZE]
        ]

    def pages(self) -> Iterator[Page]:
        """The pages of the stream, each with the runs its events start."""
        after: tuple[datetime, str] | None = None
        while True:
            rows = self._page(after)
            if not rows:
                return
            yield self._replay(rows)
            after = (rows[-1].occurred_at, rows[-1].id)
            if len(rows) < PAGE_SIZE:
                return

    # ------------------------------------------------------------ one page

    def _replay(self, rows: list[Row]) -> Page:
        triggers = self.spec.trigger_type_ids
        evaluated = [r for r in rows if r.event_type_id in triggers and r.occurred_at >= self.start]
        customers = {r.customer_id for r in evaluated}
        self._seed_firsts(customers)
        properties = self._properties(evaluated) if self.reads_properties else {}
        customer_rows = _customer_rows(customers) if self.reads_customer else {}
        segments = current_segment_refs(customer_ids=customers) if self.reads_segments else {}
        matched: list[tuple[Row, EventContext]] = []
        for row in rows:
            if row.event_type_id in self.longest:
                self._remember(row)
            if row.event_type_id not in triggers or row.occurred_at < self.start:
                if row.event_type_id in self.seen:
                    self.seen[row.event_type_id].add(row.customer_id)
                continue
            context = self._context(row, properties, customer_rows, segments)
            if self._count_leaves(context, row.occurred_at):
                matched.append((row, context))
            if row.event_type_id in self.seen:
                self.seen[row.event_type_id].add(row.customer_id)
        runs = self._apply_reentry(matched)
        last = rows[-1]
        return Page(runs, len(evaluated), last.occurred_at, last.id)

    def _remember(self, row: Row) -> None:
        times = self.times[(row.event_type_id, row.customer_id)]
        times.append(row.occurred_at)
        horizon = row.occurred_at - self.longest[row.event_type_id]
        while times and times[0] <= horizon:
            times.popleft()

    def _count(self, key: CountKey, customer_id: str, now: datetime) -> int:
        times = self.times.get((key.event_type_id, customer_id))
        if not times:
            return 0
        # Times are in stream order (ascending); those after `now` are not streamed yet.
        return len(times) - bisect.bisect_right(times, now - key.within)

    def _context(
        self,
        row: Row,
        properties: dict[str, dict[str, str]],
        customers: dict[str, dict[str, Any]],
        segments: dict[str, frozenset[str]],
    ) -> EventContext:
        now = row.occurred_at
        event: dict[str, Any] = {
            "event_id": row.id,
            "event_type": self.type_keys.get(row.event_type_id, ""),
            "event_type_id": row.event_type_id,
            "occurred_at": row.occurred_at,
        }
        if self.reads_event:
            event.update(
                created_at=row.created_at,
                external_id=row.external_id,
                secondary_external_id=row.secondary_external_id,
                depth=row.depth,
                data=row.data if isinstance(row.data, dict) else {},
            )
        return EventContext(
            event=event,
            customer=customers.get(row.customer_id, {"customer_id": row.customer_id}),
            properties=properties.get(row.id, {}),
            property_types=self.declared.get(row.event_type_id, {}),
            counts={key: self._count(key, row.customer_id, now) for key in self.count_keys},
            first_of_type={
                type_id: row.event_type_id == type_id and row.customer_id not in self.seen[type_id]
                for type_id in self.first_types
            },
            segments=segments.get(row.customer_id, frozenset()),
            now=now,
        )

    def _count_leaves(self, context: EventContext, now: datetime) -> bool:
        """Tally every leaf on this event (the funnel); True if the tree matches."""
        for leaf in self.leaves:
            counts = self.leaf_counts[leaf.path]
            counts[0] += 1
            if leaf.match(context, now):
                counts[1] += 1
        return self.spec.workflow.compiled.root.match(context, now)

    def _properties(self, rows: list[Row]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = defaultdict(dict)
        for event_id, prop, value in PropertyRecord.objects.filter(
            event_id__in=[r.id for r in rows]
        ).values_list("event_id", "property_id", "property_value"):
            found[event_id][prop] = value
        return found

    def _seed_firsts(self, customers: set[str]) -> None:
        """Customers not met yet: had they an event of the type before the stream began?"""
        for type_id in self.first_types:
            # Events of a counted type are streamed from one window back; others from
            # the period's start: what came before that is asked here.
            stream_start = self.start - self.lookback if type_id in self.longest else self.start
            unknown = customers - self.checked[type_id]
            if not unknown:
                continue
            self.checked[type_id] |= unknown
            self.seen[type_id] |= set(
                Event.objects.filter(
                    event_type_id=type_id, customer_id__in=unknown, occurred_at__lt=stream_start
                )
                .order_by()
                .values_list("customer_id", flat=True)
                .distinct()
            )

    # ------------------------------------------------------------ re-entry and caps

    def _seed_runs(self, customers: set[str]) -> None:
        unknown = customers - self.last_run.keys()
        if not unknown:
            return
        self.last_run.update(dict.fromkeys(unknown))
        if self.spec.saved_workflow_id is None:
            return
        self.last_run.update(
            WorkflowRun.objects.filter(
                workflow_id=self.spec.saved_workflow_id,
                customer_id__in=unknown,
                broadcast__isnull=True,
                created_at__lt=self.start,
            )
            .exclude(explanation__has_key=EVALUATION_ERROR)
            .order_by()
            .values("customer_id")
            .annotate(last=Max("created_at"))
            .values_list("customer_id", "last")
        )

    def _seed_real_usage(self, customers: set[str]) -> None:
        """Customers not met yet: the actions the policy's ledger holds for them that a
        cap could count during the period (other workflows', and this one's before it)."""
        policy = self.spec.policy
        unknown = customers - self.real_seeded
        if policy is None or not policy.caps or self.spec.policy_id is None or not unknown:
            return
        self.real_seeded |= unknown
        longest = max(cap.window for cap in policy.caps)
        rows = PolicyUsage.objects.filter(
            policy_id=self.spec.policy_id,
            customer_id__in=unknown,
            action_type__in=sorted({kind for cap in policy.caps for kind in cap.actions}),
            at__gt=self.start - longest,
            at__lt=self.end,
        )
        if self.spec.saved_workflow_id is not None:
            own = WorkflowRun.objects.filter(workflow_id=self.spec.saved_workflow_id)
            rows = rows.exclude(at__gte=self.start, workflow_run_id__in=own.values("pk"))
        for customer_id, kind, at in rows.order_by("at").values_list(
            "customer_id", "action_type", "at"
        ):
            for index, cap in enumerate(policy.caps):
                if kind in cap.actions:
                    self.real_times.setdefault((index, customer_id), []).append(at)

    def _real_count(self, index: int, customer_id: str, now: datetime, window: timedelta) -> int:
        """The ledger's actions for the cap in (now - window, now)."""
        times = self.real_times.get((index, customer_id))
        if not times:
            return 0
        return bisect.bisect_left(times, now) - bisect.bisect_right(times, now - window)

    def _apply_reentry(self, matched: list[tuple[Row, EventContext]]) -> list[ReplayedRun]:
        self._seed_real_usage({row.customer_id for row, _ in matched})
        if self.reentry != Workflow.EVERY_EVENT:
            self._seed_runs({row.customer_id for row, _ in matched})
        runs = []
        for row, context in matched:
            now = row.occurred_at
            if self.reentry != Workflow.EVERY_EVENT:
                previous = self.last_run.get(row.customer_id)
                if previous is not None and (self.period is None or previous > now - self.period):
                    continue
                self.last_run[row.customer_id] = now
            explanation = evaluate(self.spec.workflow.compiled, context).as_dict()
            runs.append(ReplayedRun(row, explanation, self._cap(row)))
        return runs

    def _cap(self, row: Row) -> str | None:
        """Count the run's actions against the policy's caps; the first block's reason."""
        policy = self.spec.policy
        if policy is None or not policy.caps:
            return None
        now = row.occurred_at
        reason = None
        for spec in self.spec.workflow.actions:
            kind = spec.get("type", "")
            if spec.get("exempt_from_policy"):
                continue
            blocked = None
            for index, cap in enumerate(policy.caps):
                if kind not in cap.actions:
                    continue
                times = self.cap_times[(index, row.customer_id)]
                while times and times[0] <= now - cap.window:
                    times.popleft()
                real = self._real_count(index, row.customer_id, now, cap.window)
                blocked = blocked or cap_block_reason(cap, min(len(times) + real, cap.count))
            if blocked is not None:
                reason = reason or blocked
                continue
            for index, cap in enumerate(policy.caps):
                if kind in cap.actions:
                    self.cap_times[(index, row.customer_id)].append(now)
        return reason

    # ------------------------------------------------------------ the answer

    def funnel(self) -> list[dict[str, Any]]:
        return [
            {"path": path, "evaluated": counts[0], "matched": counts[1]}
            for path, counts in self.leaf_counts.items()
        ]

    def notes(self) -> list[str]:
        notes = []
        if self.reads_customer:
            notes.append("Customer fields are read as they are now (their history is not kept).")
        if self.reads_segments:
            notes.append("Segment memberships are read as they are now.")
        if self.spec.policy is not None and self.spec.policy.caps:
            notes.append(
                "Caps count this workflow's replayed actions and the actions recorded under "
                "the same delivery policy before each event: other workflows', and this "
                "workflow's own before the period."
            )
        if self.spec.policy is not None and self.spec.policy.quiet_hours is not None:
            notes.append("Quiet hours are not simulated: they delay actions, not runs.")
        return notes
