"""A segment's full build evaluated inside PostgreSQL: one pass over the events.

Why this module exists: the general path (automation.segments.membership) fetches the
facts of a batch of customers, decides each one in Python and writes each row through
the ORM. That is right for the incremental path (a handful of customers per event) but
a build from scratch reads every customer. Here the condition tree is compiled to a
few statements over whole tables, run in one transaction:

1. the facts of every event type the condition reads, for every customer, in one scan
   of the events (conditional aggregates grouped by customer, hashed) into a
   temporary table;
2. per aggregated (event type, property): the events of that type, restricted to the
   widest window of its leaves, joined to their property records on (event_id,
   created_at), the records' partition key, so each event meets only its own month's
   records; aggregated by customer into a temporary table;
3. one statement that decides every customer from those tables (membership, and the
   next instant the answer can change) and writes the entries, exits and checks with
   `INSERT … SELECT` / `UPDATE … FROM` / `DELETE … USING` in data-modifying CTEs.

Reading whole tables once beats reading them per range of customers: a range holding a
few per cent of the rows is answered by a scan of every monthly partition anyway, so
ranges multiplied the scans. The cost is one long transaction, which is why the build
locks its segment and not its customers:

* Concurrency. The build holds its segment's lock exclusively (automation.segments.
  locks) from before its first read to its commit; every incremental refresh shares
  the lock of each segment it evaluates before it reads anything. So a refresh of
  this segment that began earlier has committed before the build reads, and one that
  begins later waits for the build's commit, then decides from what is committed. As
  every change (an event stored, a customer saved, a membership of a segment this one
  reads) is followed by such a refresh, the last writer of each customer's rows
  decided from everything committed before it: exactly the general path's guarantee.
  The statements of the build may see different commits (READ COMMITTED); anything
  committed after the first one is followed by a refresh that waits, so it is healed.
  Refreshes of other segments, ingestion and customer updates do not wait: no
  customer row is locked but by the foreign keys of the rows written (`FOR KEY
  SHARE`, at commit). A customer deleted after the build read the customers fails
  that check; the build then runs once more. A transaction that deletes or merges a
  customer (`FOR UPDATE` on it) and then refreshes this segment inside the same
  transaction can wait in a cycle with the build; PostgreSQL cancels one of the two
  (a build so cancelled is started again by the sweep).
* A build that finds its segment changed before writing writes nothing.

The statements and their semantics: automation.segments.sql_compile.
"""

# Statements are assembled from table names (model metadata), column aliases and
# operators of this module; every value is a bound parameter.

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from automation.segments.hooks import ENTERED, EXITED, Transition, transitions_made
from automation.segments.locks import segment_lock_exclusive
from automation.segments.selectors import LoadedSegment
from automation.segments.sql_compile import compile_segment, created_cutoff

logger = logging.getLogger(__name__)

# The build's session settings, for its transaction only: the aggregates hash a
# million customers, which the default work_mem would spill to disk in batches; the
# plans' costs are those of whole tables, which would have every expression compiled
# (JIT) for longer than it takes to run them; and the join of events to records is
# estimated at a row or so (two join columns), which would sort a million rows by
# customer (text, collated) where hashing them is several times cheaper. No nested
# loops: a membership or check table just emptied (a new segment's, statistics of
# none) would be scanned once per customer, each scan over the pages the same
# statement is filling; every join here is whole tables, which hashing serves.
SETTINGS = {
    "work_mem": "256MB",
    "hash_mem_multiplier": "2",
    "jit": "off",
    "enable_sort": "off",
    "enable_nestloop": "off",
}


def segment_build_sql(
    *,
    segment: LoadedSegment,
    quiet: bool,
    still_current: Callable[[], bool],
    progress: Callable[[str], None] | None = None,
) -> int | None:
    """Build `segment` in one transaction; the transitions made, or None when it cannot
    be compiled (the caller takes the general path). Writes nothing when
    `still_current()` is false before the write (the segment changed meanwhile).
    `progress` hears each step as it is done."""
    if compile_segment(segment, timezone.now()) is None:
        return None
    try:
        return _build(segment, quiet, still_current, progress)
    except IntegrityError:
        # A customer deleted while the build wrote their row (the foreign key, checked
        # at commit): once more, from what is committed now.
        if connection.in_atomic_block:
            raise
        logger.info("segment %s build: a customer went meanwhile, again", segment.key)
        return _build(segment, quiet, still_current, progress)


def _build(
    segment: LoadedSegment,
    quiet: bool,
    still_current: Callable[[], bool],
    progress: Callable[[str], None] | None,
) -> int:
    with transaction.atomic():
        segment_lock_exclusive(segment.id)
        # Compiled again once the lock is held: the build is as of this moment.
        build = compile_segment(segment, timezone.now(), quiet=quiet)
        assert build is not None
        with connection.cursor() as cursor:
            for name, value in SETTINGS.items():
                cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
            for table in build.temporary:  # an earlier build in the same outer transaction
                cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
            for index, step in enumerate(build.steps, start=1):
                if index in {1, len(build.steps)} and not still_current():
                    return 0
                params = build.params
                if step.since is not None:
                    params = {**params, "since": step.since, "cutoff": created_cutoff(step.since)}
                cursor.execute(step.sql, params)
                logger.info("segment %s build: %s", segment.key, step.name)
                if progress is not None:
                    progress(f"{index}/{len(build.steps)} {step.name}")
            rows = cursor.fetchall()
            for table in build.temporary:
                cursor.execute(f"DROP TABLE pg_temp.{table}")
        if quiet:
            return int(rows[0][2])
        transitions = [
            Transition(
                segment.id,
                segment.key,
                customer,
                membership,
                ENTERED if what == "entered" else EXITED,
                build.now,
            )
            for what, customer, membership in rows
        ]
        transitions_made(transitions)
    return len(transitions)
