"""The lock that orders a segment's build from scratch and its incremental refreshes.

A refresh (automation.segments.membership) takes, first thing in its transaction, a
shared transaction-level advisory lock per segment it evaluates; a build in the
database (automation.segments.sql_build) takes the same key exclusively for its whole
transaction. So a build never runs beside a refresh of its segment: a refresh that
started first commits before the build reads anything, and one that starts later
waits for the build's commit and then decides from what is committed, the build's
rows included. Refreshes take shared locks and never wait for each other here; they
take their keys in one order, so two of them never wait in a cycle behind builds.

The keys are (a fixed class, hashtext(segment id)): two segments whose ids hash alike
only wait for each other more than they need to.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

# hashtext('automation.segments'): the first key of every segment lock, so these
# locks never meet another subsystem's advisory locks.
_CLASS = "automation.segments"


def segments_lock_shared(segment_ids: Iterable[str]) -> None:
    """In the caller's transaction: share the locks of these segments (a refresh)."""
    ids = sorted(set(segment_ids))
    if not ids or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock_shared(hashtext(%s), k)) FROM "
            "(SELECT DISTINCT hashtext(id) AS k FROM unnest(%s::text[]) id ORDER BY k) keys",
            [_CLASS, ids],
        )


def segment_lock_exclusive(segment_id: str) -> None:
    """In the caller's transaction: hold this segment's lock alone (a build); waits
    for the refreshes holding it to commit."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", [_CLASS, segment_id]
        )
