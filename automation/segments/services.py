"""Writes for segments: create, update, delete, and the refreshes that keep them exact.

Every save validates the condition (messages by node path), checks that the event
types and segments it names exist and that no segment reads itself through others,
then (when the condition is new or changed) sets `status = building` and hands the
build to the background after commit. The build (`segment_build`) evaluates every
customer in batches (automation.segments.membership) and sets `ready`.

The incremental entry points (`segments_refresh_for_events`, `..._for_customers`,
`segments_sweep_due`) re-evaluate only the segments whose condition reads what
changed, for the customers it changed for.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from automation.segments import conditions
from automation.segments.broadcasts import broadcasts_resume_stale
from automation.segments.membership import Transition, memberships_refresh
from automation.segments.models import Segment, SegmentCheck
from automation.segments.selectors import (
    LoadedSegment,
    LoadedSegments,
    loaded_segments,
    loaded_segments_forget,
)
from automation.segments.sql_build import segment_build_sql
from automation.workflows.conditions.trees import iter_leaves
from automation.workflows.models import Workflow
from customers.models import Customer
from events_app.models import Event, EventType
from project import background
from project.audit.services import audit_record, audit_snapshot
from project.errors import ConflictError, ValidationFailed

AUDIT_TYPE = "segment"
# A key is a slug (SegmentSerializer's pattern, Segment.key's SlugField).
KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
BUILD_TASK = "automation.segment_build"
REFRESH_CUSTOMERS_TASK = "automation.segments_refresh_customers"
# A build still `building` this long after its segment's last change was lost (a
# killed worker, a lost message): the sweep starts it again.
BUILD_GRACE = timedelta(minutes=5)


@dataclass
class SegmentInput:
    """A segment as a client describes it; unset fields (None) keep their value on update."""

    key: str | None = None
    name: str | None = None
    description: str | None = None
    condition: dict[str, Any] | None = None


def _check_refs(
    segment_id: str | None, key: str, condition: Any, errors: dict[str, list[str]]
) -> None:
    """The event types and segments the condition names exist, and no cycle."""
    types = conditions.event_types_read(condition)
    if types:
        known = set()
        for pk, type_key in EventType.objects.filter(
            Q(key__in=types) | Q(pk__in=types)
        ).values_list("pk", "key"):
            known.update({pk, type_key})
        missing = sorted(types - known)
        if missing:
            errors.setdefault("condition", []).append(
                f"Unknown event type(s): {', '.join(missing)}."
            )
    reads = conditions.segments_read(condition)
    if not reads:
        return
    others = {s.pk: s for s in Segment.objects.exclude(pk=segment_id or "")}
    by_ref = {**{s.key: s.pk for s in others.values()}, **{pk: pk for pk in others}}
    if segment_id is not None:  # the others' references to this segment lead back to it
        by_ref.update({segment_id: segment_id, key: segment_id})
        by_ref.update(Segment.objects.filter(pk=segment_id).values_list("key", "pk"))
    graph = {
        pk: {by_ref.get(r) for _, r in conditions.segments_read(s.condition)}
        for pk, s in others.items()
    }
    for path, ref in reads:
        if ref in {key, segment_id} or (segment_id and by_ref.get(ref) == segment_id):
            errors.setdefault(f"{path}.segment", []).append("A segment cannot contain itself.")
        elif ref not in by_ref:
            errors.setdefault(f"{path}.segment", []).append(f"Unknown segment {ref!r}.")
        elif _reaches(graph, by_ref[ref], segment_id):
            errors.setdefault(f"{path}.segment", []).append(
                f"Segment {ref!r} reads this segment (directly or through others): a cycle."
            )


def _reaches(graph: dict[str, set[str | None]], start: str, target: str | None) -> bool:
    if target is None:
        return False  # a new segment: nothing reads it yet
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node == target:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack += [n for n in graph.get(node, ()) if n]
    return False


def segment_validate(data: SegmentInput, *, segment_id: str | None = None) -> dict[str, list[str]]:
    """Every problem of a (complete) segment, by path."""
    errors: dict[str, list[str]] = {}
    if not KEY_RE.fullmatch(data.key or ""):
        errors.setdefault("key", []).append("Must be 1-64 letters, digits, '-' or '_'.")
    if not data.name or not data.name.strip():
        errors.setdefault("name", []).append("Must not be blank.")
    try:
        conditions.validate(data.condition if data.condition is not None else {})
    except conditions.trees.ConditionError as exc:
        for path, messages in exc.errors.items():
            errors.setdefault(path, []).extend(messages)
    else:
        _check_refs(segment_id, data.key or "", data.condition or {}, errors)
    return errors


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        path, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid segment: {path}: {messages[0]}", details=errors)


def _key_conflict(key: str) -> ConflictError:
    existing = Segment.objects.filter(key=key).values_list("pk", flat=True).first()
    return ConflictError(
        f"A segment with the key '{key}' already exists.", extra={"segment_id": existing}
    )


def _build_on_commit(segment: Segment) -> None:
    segment_id, version = segment.pk, segment.version
    transaction.on_commit(loaded_segments_forget)
    transaction.on_commit(lambda: background.enqueue(BUILD_TASK, segment_id, version))


def segment_create(*, data: SegmentInput) -> Segment:
    """Validate and store a segment; its membership is built in the background."""
    _raise_if(segment_validate(data))
    assert data.key is not None
    assert data.name is not None
    if Segment.objects.filter(key=data.key).exists():
        raise _key_conflict(data.key)
    try:
        with transaction.atomic():
            segment = Segment.objects.create(
                key=data.key,
                name=data.name.strip(),
                description=data.description or "",
                condition=data.condition or {},
            )
            audit_record(
                action="created",
                obj_type=AUDIT_TYPE,
                obj_id=segment.pk,
                after=audit_snapshot(segment),
            )
            _build_on_commit(segment)
    except IntegrityError:
        raise _key_conflict(data.key) from None
    return segment


def segment_update(*, segment: Segment, data: SegmentInput) -> Segment:
    """Change the given fields; a changed condition rebuilds the membership."""
    merged = SegmentInput(
        key=segment.key if data.key is None else data.key,
        name=segment.name if data.name is None else data.name,
        description=segment.description if data.description is None else data.description,
        condition=segment.condition if data.condition is None else data.condition,
    )
    _raise_if(segment_validate(merged, segment_id=segment.pk))
    assert merged.key is not None
    assert merged.name is not None
    if merged.key != segment.key and Segment.objects.filter(key=merged.key).exists():
        raise _key_conflict(merged.key)
    if merged.key != segment.key:
        readers = _readers(segment, {segment.key})
        if readers:
            raise _readers_conflict(f"Segment key '{segment.key}' is named by others", readers)
    rebuild = merged.condition != segment.condition
    try:
        with transaction.atomic():
            before = audit_snapshot(segment)
            segment.key, segment.name = merged.key, merged.name.strip()
            segment.description, segment.condition = merged.description or "", merged.condition
            if rebuild:
                segment.status = Segment.Status.BUILDING
                segment.version = F("version") + 1
            segment.save()
            segment.refresh_from_db(fields=["version"])
            audit_record(
                action="updated",
                obj_type=AUDIT_TYPE,
                obj_id=segment.pk,
                before=before,
                after=audit_snapshot(segment),
            )
            if rebuild:
                _build_on_commit(segment)
            else:
                transaction.on_commit(loaded_segments_forget)
    except IntegrityError:
        raise _key_conflict(merged.key) from None
    return segment


def _readers(segment: Segment, refs: set[str]) -> dict[str, list[str]]:
    """The other segments (keys) and the workflows (ids) whose condition or segment
    triggers name `segment` by one of `refs`; only the kinds that have any."""
    found = {
        "segments": sorted(
            s.key
            for s in Segment.objects.exclude(pk=segment.pk)
            if any(ref in refs for _, ref in conditions.segments_read(s.condition))
        ),
        "workflows": sorted(
            pk
            for pk, tree, triggers in Workflow.objects.values_list(
                "pk", "conditions", "trigger_segments"
            )
            if any(leaf.get("segment") in refs for leaf in iter_leaves(tree))
            or any(isinstance(t, dict) and t.get("segment") in refs for t in triggers or [])
        ),
    }
    return {kind: names for kind, names in found.items() if names}


def _readers_conflict(message: str, readers: dict[str, list[str]]) -> ConflictError:
    named = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in readers.items())
    return ConflictError(f"{message} ({named}).", extra=readers)


def segment_delete(*, segment: Segment) -> None:
    """Delete a segment and its history; refused while another segment reads it."""
    readers = _readers(segment, {segment.pk, segment.key})
    if readers:
        raise _readers_conflict(f"Segment '{segment.key}' is read by others", readers)
    with transaction.atomic():
        # The row lock first: a build or refresh writing this segment's memberships holds
        # a key-share lock on it, so this waits for them to commit (and their rows are
        # deleted below), and any later one waits for this delete and then finds no
        # segment, instead of a membership landing between the two deletes.
        if not Segment.objects.select_for_update().filter(pk=segment.pk).exists():
            return
        audit_record(
            action="deleted", obj_type=AUDIT_TYPE, obj_id=segment.pk, before=audit_snapshot(segment)
        )
        SegmentCheck.objects.filter(segment=segment).delete()
        segment.memberships.all().delete()
        segment.delete()
        transaction.on_commit(loaded_segments_forget)


# ---------------------------------------------------------------- building


def segment_build(*, segment_id: str, version: int) -> int:
    """Evaluate every customer for one segment version; returns the transitions made.

    Stops (leaving the status to the newer build) when the segment was changed or
    deleted meanwhile. Then marks it ready and rebuilds the segments that read it.
    The first build of a segment finds its initial members: they entered nothing, so
    its transitions start no segment trigger (a broadcast reaches them).
    """
    cache = loaded_segments()
    loaded = cache.by_id.get(segment_id)
    if loaded is None or loaded.version != version:
        return 0
    first = not Segment.objects.filter(pk=segment_id, built_at__isnull=False).exists()

    def current() -> bool:
        return Segment.objects.filter(pk=segment_id, version=version).exists()

    # In the database, a range of customers per statement, when the condition compiles.
    made_sql = segment_build_sql(segment=loaded, quiet=first, still_current=current)
    if made_sql is not None:
        return _build_finished(cache, segment_id, version, made_sql)
    size = settings.HERALD_SEGMENT_BATCH_SIZE
    made, after = 0, ""
    while True:
        chunk = list(
            Customer.objects.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:size]
        )
        if not chunk:
            break
        if not current():
            return made
        made += len(memberships_refresh(segments=[loaded], customer_ids=chunk, quiet=first))
        after = chunk[-1]
    return _build_finished(cache, segment_id, version, made)


def _build_finished(cache: LoadedSegments, segment_id: str, version: int, made: int) -> int:
    """Mark the build ready (unless a newer version took over) and rebuild its readers."""
    ready = Segment.objects.filter(pk=segment_id, version=version).update(
        status=Segment.Status.READY, built_at=timezone.now()
    )
    if ready:
        transaction.on_commit(loaded_segments_forget)
        for dependent in cache.with_dependents({segment_id})[1:]:
            background.enqueue(BUILD_TASK, dependent.id, dependent.version)
    return made


# ---------------------------------------------------------------- incremental refresh


def segments_refresh_for_events(*, events: Iterable[Any]) -> list[Transition]:
    """Re-evaluate, for each event's customer, the segments reading the event's type;
    a customer the ingest created (created with the event) gets every segment.

    `events`: anything with customer_id, event_type_id and created_at.
    """
    cache = loaded_segments()
    if not cache.ordered:
        return []
    by_customer: dict[str, set[str]] = defaultdict(set)
    created: dict[str, Any] = {}
    for event in events:
        by_customer[event.customer_id].add(event.event_type_id)
        created[event.customer_id] = min(
            created.get(event.customer_id, event.created_at), event.created_at
        )
    new = {
        pk
        for pk, customer_created in Customer.objects.filter(pk__in=list(by_customer)).values_list(
            "pk", "created_at"
        )
        if customer_created >= created[pk]
    }
    wanted = {
        s.id
        for s in cache.ordered
        for customer_id, types in by_customer.items()
        if customer_id in new or s.event_type_ids & types
    }
    return memberships_refresh(segments=cache.with_dependents(wanted), customer_ids=by_customer)


def segments_refresh_for_event_ids(*, event_ids: list[str]) -> int:
    """`segments_refresh_for_events` for stored events, by id; returns the transitions."""
    if not loaded_segments().ordered:
        return 0
    events = Event.objects.filter(pk__in=event_ids).only(
        "customer_id", "event_type_id", "created_at"
    )
    return len(segments_refresh_for_events(events=list(events)))


def segments_refresh_for_customers(
    *, customer_ids: Iterable[str], fields: Iterable[str] | None
) -> list[Transition]:
    """Re-evaluate the segments reading any of `fields` (None: a new customer, every
    segment) for these customers."""
    return memberships_refresh(segments=_reading(fields), customer_ids=customer_ids)


def _reading(fields: Iterable[str] | None) -> list[LoadedSegment]:
    """The segments reading any of `fields` (None: every segment), with their readers."""
    cache = loaded_segments()
    changed = None if fields is None else set(fields)
    wanted = {s.id for s in cache.ordered if changed is None or s.customer_fields & changed}
    return cache.with_dependents(wanted)


def segments_refresh_customers_on_commit(
    *, customer_ids: list[str], fields: list[str] | None
) -> None:
    """In the caller's transaction, mark the (segment, customer) pairs to re-evaluate as
    due now (`SegmentCheck`); after its commit, refresh them in the background. The
    marks commit with the change, so a lost message only delays the refresh until the
    sweep takes them."""
    segments = _reading(fields)
    if not segments or not customer_ids:
        return
    now = timezone.now()
    SegmentCheck.objects.bulk_create(
        [
            SegmentCheck(segment_id=s.id, customer_id=c, next_check_at=now)
            for s in segments
            for c in customer_ids
        ],
        update_conflicts=True,
        unique_fields=["segment", "customer"],
        update_fields=["next_check_at"],
    )
    transaction.on_commit(lambda: background.enqueue(REFRESH_CUSTOMERS_TASK, customer_ids, fields))


def segments_sweep_due(now: datetime | None = None) -> int:
    """Periodic: re-evaluate the (segment, customer) pairs whose answer may have changed
    with time, restart lost builds and hand on broadcasts that lost their worker;
    returns how many pairs were due."""
    now = now or timezone.now()
    due: dict[str, list[str]] = defaultdict(list)
    for segment_id, customer_id in (
        SegmentCheck.objects.filter(next_check_at__lte=now)
        .order_by("next_check_at")
        .values_list("segment_id", "customer_id")[: settings.HERALD_SEGMENT_SWEEP_CHUNK]
    ):
        due[segment_id].append(customer_id)
    cache = loaded_segments()
    for segment_id, customer_ids in due.items():
        memberships_refresh(segments=cache.with_dependents({segment_id}), customer_ids=customer_ids)
    for segment_id, version in Segment.objects.filter(
        status=Segment.Status.BUILDING, updated_at__lt=now - BUILD_GRACE
    ).values_list("pk", "version"):
        Segment.objects.filter(pk=segment_id).update(updated_at=now)
        background.enqueue(BUILD_TASK, segment_id, version)
    broadcasts_resume_stale(now=now)
    return sum(len(c) for c in due.values())
