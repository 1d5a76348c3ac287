"""Reads for segments: lists, members, a customer's segments, and the compiled cache.

The cache holds every segment compiled, in dependency order (a segment after the
segments its condition reads), with what each reads: event types, customer fields,
other segments. Workers and ingestion reload it when the segment stamp (count,
latest updated_at) changes, like the workflows' (automation.workflows.stamp).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from automation.segments import conditions
from automation.segments.conditions import Refs
from automation.segments.engine import CompiledSegment
from automation.segments.models import Segment, SegmentMembership
from events_app.models import EventType
from project.errors import NotFoundError
from project.sql import fetch_all, table_stamp_parts

SEGMENT_SORT_FIELDS = {"created_at": "created_at", "key": "key", "name": "name", "segment_id": "pk"}
MEMBER_SORT_FIELDS = {"entered_at": "entered_at", "customer_id": "customer_id"}
CUSTOMER_SEGMENT_SORT_FIELDS = {"entered_at": "entered_at", "segment_id": "segment_id"}

SegmentStamp = tuple[str, str | None]


def segment_list() -> QuerySet[Segment]:
    return Segment.objects.annotate(
        member_count=Count("memberships", filter=Q(memberships__exited_at__isnull=True))
    )


def segment_get(*, segment_id: str) -> Segment:
    """A segment by id or by key, with its member count."""
    found = segment_list().filter(Q(pk=segment_id) | Q(key=segment_id)).order_by("pk").first()
    if found is None:
        raise NotFoundError(f"Segment '{segment_id}' not found.")
    return found


def segment_members(*, segment: Segment) -> QuerySet[SegmentMembership]:
    """The current members, with their customers (members list)."""
    return SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).select_related(
        "customer"
    )


def customer_segments(*, customer_id: str, history: bool) -> QuerySet[SegmentMembership]:
    """A customer's current memberships, and with `history` the past ones too."""
    queryset = SegmentMembership.objects.filter(customer_id=customer_id).select_related("segment")
    return queryset if history else queryset.filter(exited_at__isnull=True)


def segments_existing(*, refs: Iterable[str]) -> set[str]:
    """Those of `refs` (ids or keys) that name a segment."""
    wanted = list(refs)
    found: set[str] = set()
    for pk, key in Segment.objects.filter(Q(pk__in=wanted) | Q(key__in=wanted)).values_list(
        "pk", "key"
    ):
        found.update({pk, key})
    return found & set(wanted)


def current_segment_refs(*, customer_ids: Iterable[str]) -> dict[str, frozenset[str]]:
    """Customer id -> the ids and keys of the segments they are in now (one query);
    what a workflow's `{"segment": …}` leaf reads."""
    found: dict[str, set[str]] = {}
    for customer_id, segment_id, key in SegmentMembership.objects.filter(
        customer_id__in=list(customer_ids), exited_at__isnull=True
    ).values_list("customer_id", "segment_id", "segment__key"):
        found.setdefault(customer_id, set()).update({segment_id, key})
    return {customer_id: frozenset(refs) for customer_id, refs in found.items()}


# ---------------------------------------------------------------- the compiled cache


@functools.cache
def stamp_sql_parts() -> tuple[str, str]:
    """(select list of its 2 columns, the rest of the statement), built from the model."""
    return table_stamp_parts(Segment)


def segment_stamp_read() -> SegmentStamp:
    columns, rest = stamp_sql_parts()
    ((count, latest),) = fetch_all(f"SELECT {columns} {rest}", [])
    return count, latest


@dataclass
class LoadedSegment:
    id: str
    key: str
    version: int
    compiled: CompiledSegment
    event_type_ids: frozenset[str]
    customer_fields: frozenset[str]
    depends_on: frozenset[str]


@dataclass
class LoadedSegments:
    stamp: SegmentStamp
    ordered: list[LoadedSegment] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, LoadedSegment]:
        return {s.id: s for s in self.ordered}

    @functools.cached_property
    def event_type_ids(self) -> frozenset[str]:
        """Every event type some segment reads (ingestion flags those events)."""
        return frozenset(t for s in self.ordered for t in s.event_type_ids)

    def with_dependents(self, segment_ids: set[str]) -> list[LoadedSegment]:
        """`segment_ids` and every segment reading them (transitively), in dependency
        order: a segment's membership is settled before a segment reading it."""
        wanted = set(segment_ids)
        for segment in self.ordered:  # dependencies come first, so one pass suffices
            if segment.depends_on & wanted:
                wanted.add(segment.id)
        return [s for s in self.ordered if s.id in wanted]


def _dependency_order(segments: list[LoadedSegment]) -> list[LoadedSegment]:
    by_id = {s.id: s for s in segments}
    ordered: list[LoadedSegment] = []
    done: set[str] = set()

    def visit(segment: LoadedSegment, path: frozenset[str]) -> None:
        if segment.id in done or segment.id in path:  # a cycle is refused at save
            return
        for dependency in sorted(segment.depends_on):
            if dependency in by_id:
                visit(by_id[dependency], path | {segment.id})
        done.add(segment.id)
        ordered.append(segment)

    for segment in sorted(segments, key=lambda s: s.id):
        visit(segment, frozenset())
    return ordered


def refs_read() -> Refs:
    return Refs(
        type_ids=dict(EventType.objects.values_list("key", "id")),
        segment_ids=dict(Segment.objects.values_list("key", "id")),
    )


def load_segment(segment: Segment, refs: Refs) -> LoadedSegment:
    compiled = CompiledSegment(segment.condition, refs)
    return LoadedSegment(
        id=segment.pk,
        key=segment.key,
        version=segment.version,
        compiled=compiled,
        event_type_ids=frozenset(
            refs.type_ids.get(ref, ref) for ref in conditions.event_types_read(segment.condition)
        ),
        customer_fields=frozenset(conditions.customer_fields_read(segment.condition)),
        depends_on=frozenset(
            refs.segment_ids.get(ref, ref) for _, ref in conditions.segments_read(segment.condition)
        ),
    )


_cache_lock = threading.Lock()
_cache: LoadedSegments | None = None


def loaded_segments(*, stamp: SegmentStamp | None = None) -> LoadedSegments:
    """Every segment compiled, reloaded only when the table changed."""
    global _cache
    if stamp is None:
        stamp = segment_stamp_read()
    with _cache_lock:
        if _cache is None or _cache.stamp != stamp:
            if stamp[0] == "0":  # no segment: nothing to read (ingestion's usual case)
                _cache = LoadedSegments(stamp=stamp)
                return _cache
            refs = refs_read()
            segments = [load_segment(s, refs) for s in Segment.objects.order_by("pk")]
            _cache = LoadedSegments(stamp=stamp, ordered=_dependency_order(segments))
        return _cache


def loaded_segments_forget() -> None:
    global _cache
    with _cache_lock:
        _cache = None
