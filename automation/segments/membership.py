"""Keeping memberships exact: evaluate segments for customers and apply the difference.

`memberships_refresh(segments, customer_ids)` is the one way memberships change, used
by every path (an event ingested, a customer changed, a window running out, a full
build). Per batch of customers, in one transaction:

1. Share the lock of every segment evaluated (automation.segments.locks: a build of
   one of them in the database runs alone), then lock the customers' rows (`FOR NO
   KEY UPDATE`, in id order): two workers refreshing the same customer take turns,
   and the second one reads what the first committed (READ COMMITTED: each statement
   sees the latest commits). Ingestion's foreign-key
   checks take `FOR KEY SHARE`, which this lock does not block. A deleted customer is
   not locked and drops out (the delete removed their rows).
2. Read the clock, then the facts every segment reads (automation.segments.facts: a
   fixed number of queries per batch), and decide each (segment, customer) with the
   pure evaluator (automation.segments.engine).
3. Apply the difference, segment by segment in dependency order (a segment reading
   another sees its new memberships): an entry inserts a row, an exit sets
   `exited_at`; the next instant each answer can change alone is stored
   (`SegmentCheck`) for the sweep.
4. Tell the transition hooks (automation.segments.hooks: the workflows' segment
   triggers) in the same transaction, so what they write (a run per transition)
   exists exactly when the transition does.

Because a refresh decides from what is committed when it holds the lock, and every
change (an event stored, a customer saved) is followed by a refresh after its commit,
the last refresh of a customer leaves exactly what a recomputation from scratch would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from automation.segments.engine import Decision
from automation.segments.facts import CustomerFacts, FactKey, MemberKey, customer_rows, facts_fetch
from automation.segments.hooks import ENTERED, EXITED, Transition, transitions_made
from automation.segments.locks import segments_lock_shared
from automation.segments.models import SegmentCheck, SegmentMembership
from automation.segments.selectors import LoadedSegment
from customers.models import Customer

__all__ = ["ENTERED", "EXITED", "Transition", "memberships_refresh"]


def _lock_customers(customer_ids: list[str]) -> list[str]:
    """Step 1: lock the rows of the customers that exist; their ids in id order."""
    queryset = Customer.objects.filter(pk__in=customer_ids).order_by("pk")
    if connection.vendor == "postgresql":
        queryset = queryset.select_for_update(no_key=True)
    return list(queryset.values_list("pk", flat=True))


def _apply(
    segment: LoadedSegment, decisions: dict[str, Decision], now: datetime
) -> list[Transition]:
    """Step 3 for one segment: insert entries, stamp exits, store the next checks."""
    customer_ids = list(decisions)
    current: dict[str, int] = dict(
        SegmentMembership.objects.filter(
            segment_id=segment.id, customer_id__in=customer_ids, exited_at__isnull=True
        ).values_list("customer_id", "id")
    )
    entering = [c for c, d in decisions.items() if d.member and c not in current]
    leaving = sorted(c for c in current if not decisions[c].member)
    entered: dict[str, int] = {}
    if entering:
        # The partial unique index keeps one current row per pair whatever happens.
        SegmentMembership.objects.bulk_create(
            [
                SegmentMembership(segment_id=segment.id, customer_id=c, entered_at=now)
                for c in entering
            ],
            ignore_conflicts=True,
        )
        # The stays just opened (ignore_conflicts gives no ids back); the customers are
        # locked, so these are the rows this transaction inserted.
        entered = dict(
            SegmentMembership.objects.filter(
                segment_id=segment.id, customer_id__in=entering, exited_at__isnull=True
            ).values_list("customer_id", "id")
        )
    if leaving:
        SegmentMembership.objects.filter(
            segment_id=segment.id, customer_id__in=leaving, exited_at__isnull=True
        ).update(exited_at=now)
    SegmentCheck.objects.filter(segment_id=segment.id, customer_id__in=customer_ids).delete()
    SegmentCheck.objects.bulk_create(
        [
            SegmentCheck(segment_id=segment.id, customer_id=c, next_check_at=d.next_check_at)
            for c, d in decisions.items()
            if d.next_check_at is not None
        ]
    )
    return [
        Transition(segment.id, segment.key, c, entered[c], ENTERED, now)
        for c in entering
        if c in entered
    ] + [Transition(segment.id, segment.key, c, current[c], EXITED, now) for c in leaving]


def _refresh_batch(
    segments: Sequence[LoadedSegment], customer_ids: list[str], *, quiet: bool
) -> list[Transition]:
    with transaction.atomic():
        # Before anything is read: a build of one of these segments in progress
        # finishes first (automation.segments.locks).
        segments_lock_shared(s.id for s in segments)
        locked = _lock_customers(customer_ids)
        if not locked:
            return []
        now = timezone.now()
        customers = customer_rows(locked)
        keys: set[FactKey] = {k for s in segments for k in s.compiled.fact_keys}
        # Memberships are read per segment, after the segments they name are applied.
        shared = facts_fetch(
            keys={k for k in keys if not isinstance(k, MemberKey)}, customers=customers, now=now
        )
        transitions: list[Transition] = []
        for segment in segments:
            facts: dict[str, CustomerFacts] = shared
            members: set[FactKey] = {
                k for k in segment.compiled.fact_keys if isinstance(k, MemberKey)
            }
            if members:
                own = facts_fetch(keys=members, customers=customers, now=now)
                facts = {
                    c: CustomerFacts(f.customer, {**f.values, **own[c].values})
                    for c, f in shared.items()
                }
            decisions = {c: segment.compiled.decide(facts[c], now) for c in customers}
            transitions += _apply(segment, decisions, now)
        if not quiet:
            transitions_made(transitions)
        return transitions


def memberships_refresh(
    *, segments: Sequence[LoadedSegment], customer_ids: Iterable[str], quiet: bool = False
) -> list[Transition]:
    """Evaluate `segments` (in dependency order) for the customers and apply the
    difference, a batch of customers per transaction; returns the transitions.
    `quiet`: tell no transition hook (a segment's first build)."""
    if not segments:
        return []
    ids = sorted(set(customer_ids))
    size = settings.HERALD_SEGMENT_BATCH_SIZE
    transitions: list[Transition] = []
    for start in range(0, len(ids), size):
        transitions += _refresh_batch(segments, ids[start : start + size], quiet=quiet)
    return transitions
