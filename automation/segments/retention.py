"""Retention and segments: re-evaluate what read the events retention dropped.

When HERALD_EVENT_RETENTION drops a month of events (events_app.partitions), counts,
aggregates and recency read from them change for every customer who had events in
that month -- including customers who were not members (a `"op": "eq", "value": 0`
segment gains them). The hook (`segments_events_dropped`, registered through
events_app.retention_hooks in AutomationConfig.ready()) rebuilds every segment whose
condition reads that far back: a count or an aggregate over all time or over a window
longer than the age of the month's end, and any recency (`last`) leaf, which reads all
time. The segments are marked `building` in the transaction that drops the month and
rebuilt after its commit; a lost build is restarted by the sweep, as any build is.
Segments that read a rebuilt segment are rebuilt after it (automation.segments.services
.segment_build).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from automation.segments.facts import AggregateKey, CountKey, LastKey
from automation.segments.models import Segment
from automation.segments.selectors import LoadedSegment, loaded_segments, loaded_segments_forget
from automation.segments.services import BUILD_TASK
from project import background


def reads_back(segment: LoadedSegment, age: timedelta) -> bool:
    """Does the segment read events older than `age` (so dropping them may change it)?"""
    for key in segment.compiled.fact_keys:
        if isinstance(key, LastKey):
            return True
        if isinstance(key, CountKey | AggregateKey) and (key.within is None or key.within > age):
            return True
    return False


def segments_events_dropped(
    *, created_from: datetime, created_to: datetime, now: datetime | None = None
) -> list[str]:
    """Mark the segments that read events created before `created_to` as building and
    rebuild them after commit; returns their ids."""
    now = now or timezone.now()
    affected = [s.id for s in loaded_segments().ordered if reads_back(s, now - created_to)]
    if not affected:
        return []
    Segment.objects.filter(pk__in=affected).update(status=Segment.Status.BUILDING, updated_at=now)
    builds = list(Segment.objects.filter(pk__in=affected).values_list("pk", "version"))
    transaction.on_commit(loaded_segments_forget)
    transaction.on_commit(lambda: background.enqueue_many(BUILD_TASK, builds))
    return affected
