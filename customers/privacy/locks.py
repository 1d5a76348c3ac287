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
suppression. Events naming a known customer take no lock. SQLite (the embedded
default) serialises write transactions instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import connection


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
