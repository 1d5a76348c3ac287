"""A month's partitions made on demand: an insert never fails for want of one.

The events tables have no default partition: with one, PostgreSQL cannot read the
months in order (an ordered Append), and every list sorted by time merged all the
months' indexes instead. So a row of a month without a partition would be refused.
The scheduler's job makes the months ahead of time; for whatever writes outside them
(the job has not run yet, a bulk load of past events, a clock set back or frozen in a
test), every writer of events and property records calls `partitions_cover` with the
creation times it is about to insert: the ingest statement (events_app.ingest_store),
the models' `save` and `bulk_create`, generate_events (through partitions_ensure).

The months known to exist are remembered per process, so the common case costs a set
lookup and no query. A month is remembered only once its partitions are committed (a
creation rolled back with its caller's transaction is looked up again), and forgotten
when retention drops it in this process; a month another process dropped was past
retention, which no insert of the current time names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, models, transaction

from events_app.partitions.ddl import is_partitioned, month_partition_create, partition_exists
from events_app.partitions.months import PARTITIONED_TABLES, Month

_M = TypeVar("_M", bound=models.Model)

# The advisory lock that serialises partition changes (maintenance takes it too).
LOCK = (0x4845524C, 0x50415254)

_known: set[Month] = set()  # committed, seen in the catalog or created and committed
_lock = threading.Lock()
_local = threading.local()  # .uncommitted: months this thread created, commit pending


def partitions_cover(instants: Iterable[datetime]) -> list[Month]:
    """Make sure the months of `instants` have their partitions (PostgreSQL, when the
    events are partitioned); return the months created. In the caller's transaction
    if there is one (the partitions then exist for its insert and go with its
    rollback), else in one of its own."""
    if connection.vendor != "postgresql":
        return []
    months = {Month.of(moment) for moment in set(instants)}
    if months <= _known:
        return []
    return _months_ensure(months - _known)


def months_created(months: Iterable[Month]) -> None:
    """Partitions of `months` were created in the current transaction: remembered when
    it commits (at once outside one), looked up again until then."""
    made = set(months)
    if not made:
        return
    uncommitted = _uncommitted()
    uncommitted |= made

    def committed() -> None:
        uncommitted.difference_update(made)
        # Run after a real commit, outside any transaction; a caller replaying the
        # hooks inside one (a test's capture of on_commit callbacks) proves nothing,
        # and a month remembered wrongly would fail every insert naming it.
        if not connection.in_atomic_block:
            _remember(made)

    transaction.on_commit(committed)


def months_forget(months: Iterable[Month]) -> None:
    """Retention dropped these months: a later insert looks them up again."""
    with _lock:
        _known.difference_update(months)


def months_known_clear() -> None:
    """Forget every month (the next insert looks them up): for whatever dropped or
    rebuilt partitions behind this process's back, such as a test's migrations."""
    with _lock:
        _known.clear()
    _uncommitted().clear()


def _uncommitted() -> set[Month]:
    if not hasattr(_local, "uncommitted"):
        _local.uncommitted = set()
    months: set[Month] = _local.uncommitted
    return months


def _remember(months: Iterable[Month]) -> None:
    with _lock:
        _known.update(months)


def _exists(cursor: Any, month: Month) -> bool:
    return all(partition_exists(cursor, month.partition(table)) for table in PARTITIONED_TABLES)


def _months_ensure(months: set[Month]) -> list[Month]:
    """1. Look the months up: those in the catalog are remembered (unless this thread
       created them and has not committed yet); nothing is locked.
    2. Create the others under the partitions' advisory lock (concurrent callers take
       turns; the second finds them made), in the caller's transaction or a new one.
    3. Remember those when that transaction commits."""
    if not connection.in_atomic_block:
        # Outside a transaction every creation of this thread has ended: committed
        # ones were remembered, the rest rolled back. Forget them, or a month made
        # in a rolled-back transaction would be looked up on every insert.
        _uncommitted().clear()
    with connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return []
        missing = {m for m in months if not _exists(cursor, m)}
        _remember(months - missing - _uncommitted())
        if not missing:
            return []
        with transaction.atomic():
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(LOCK))
            created = [m for m in sorted(missing) if month_partition_create(cursor, m)]
            months_created(missing)
    return created


class PartitionedManager(models.Manager[_M]):
    """The manager of a partitioned model: `bulk_create` first makes sure the months
    of the rows' `created_at` have partitions (the model's `save` does the same)."""

    def bulk_create(self, objs: Iterable[_M], *args: Any, **kwargs: Any) -> list[_M]:
        rows = list(objs)
        partitions_cover(row.created_at for row in rows)  # type: ignore[attr-defined]
        return super().bulk_create(rows, *args, **kwargs)
