"""The lock that keeps a suppressed identifier from being created again.

Ingest reads the suppression list, then inserts; a suppress request committing in
between would let the insert create the identifier it has just listed. Both sides
take a transaction-scoped advisory lock per identifier digest:

1. A suppress request takes it exclusively, before it reads the person's customers
   and writes the list; it holds it until its commit.
2. Ingest, about to create a customer for an identifier it does not know, takes it
   shared in a statement of its own, before the statement that inserts. That insert
   takes its snapshot after the lock is granted, so it sees a suppression committed
   before, and checks the list again (NOT EXISTS) in the same statement.

Either the suppress request waited for the ingest to commit (and then finds and
deletes the customer it created), or the ingest waited for the suppress request (and
then sees the identifier listed): in neither order does the identifier outlive the
suppression.

A suppress request only learns the person's other identifiers by reading their
customers, and two requests naming different identifiers of one person would each hold
their own and wait for the other's. So a request never adds locks to the ones it holds:
`suppression_locks_take_covering` reads, takes every lock the read names in one sorted
batch from none held (a savepoint rolled back releases them), and reads again under
them until the read names no identifier beyond them. Sorted batches taken from nothing
cannot wait on each other in a cycle.

Events naming a known customer take no lock. SQLite (the embedded default) serialises
write transactions instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import connection, transaction

T = TypeVar("T")


def suppression_lock_key(digest: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of one identifier's digest."""
    key = hashlib.blake2b(f"suppression:{digest}".encode(), digest_size=8).digest()
    return int.from_bytes(key, "big", signed=True)


def suppression_locks_take(digests: Iterable[str], *, shared: bool) -> None:
    """Take the lock of each digest until the end of the current transaction (which
    the caller must hold): shared by ingest, exclusive by a suppress request. Sorted,
    so suppress requests naming overlapping identifiers cannot deadlock."""
    keys = sorted({suppression_lock_key(d) for d in digests})
    if not keys or connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count({function}(k)) FROM "  # noqa: S608 (a name from the two above)
            "(SELECT k FROM unnest(%s::bigint[]) AS t(k) ORDER BY k) AS s",
            [keys],
        )


def suppression_locks_take_covering(read: Callable[[], tuple[T, set[str]]]) -> T:
    """Exclusive locks on every digest `read` names, held until the end of the current
    transaction, and what `read` returned under them (see the module docstring).

    `read` returns a value and the digests it depends on; it runs once before the locks
    and again after each batch, until a read under the locks names no digest beyond
    them. Ends holding exactly one sorted batch, taken while holding none."""
    held: set[str] = set()
    savepoint = transaction.savepoint()
    while True:
        value, wanted = read()
        if wanted <= held:
            transaction.savepoint_commit(savepoint)
            return value
        held |= wanted
        transaction.savepoint_rollback(savepoint)  # lets go of the locks of a smaller batch
        suppression_locks_take(held, shared=False)
