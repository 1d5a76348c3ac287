"""The caps' ledger (PolicyUsage): check-and-take in as few round trips as exactness allows.

PostgreSQL, for one action under caps:

1. A transaction-scoped advisory lock per (policy, customer), taken in the statement
   that reads the customer's attributes when quiet hours need them (else alone).
2. One statement that counts each cap's window (bounded by the cap's count: a large
   window never reads more rows than the cap) and inserts the ledger row only if
   every cap allows it.

They must be two statements: under READ COMMITTED a statement sees what was committed
before it started, so the count has to start after the lock is granted -- then it sees
every action that a run holding the lock before it took. The lock is held until the
step's transaction commits, with the action's effect and the ledger row.

SQLite (the embedded default) has one writer at a time: the ORM, and no lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from automation.workflows.policies.models import PolicyUsage
from automation.workflows.policies.spec import Cap
from customers.models import Customer


def _lock_key(policy_id: str, customer_id: str) -> int:
    digest = hashlib.blake2b(f"policy:{policy_id}:{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_and_read_attributes(
    *, policy_id: str, customer_id: str, read: bool, lock: bool
) -> dict[str, Any]:
    """Take the (policy, customer) lock if `lock`; the customer's attributes if `read`
    (else {}). One statement on PostgreSQL."""
    if connection.vendor != "postgresql":
        if not read:
            return {}
        found = Customer.objects.filter(pk=customer_id).values_list("attributes", flat=True)
        return _as_dict(found.first())
    table = connection.ops.quote_name(Customer._meta.db_table)
    with connection.cursor() as cursor:
        if read and lock:
            cursor.execute(
                f"SELECT attributes, pg_advisory_xact_lock(%s) FROM {table} WHERE id = %s",  # noqa: S608
                [_lock_key(policy_id, customer_id), customer_id],
            )
        elif read:
            cursor.execute(f"SELECT attributes FROM {table} WHERE id = %s", [customer_id])  # noqa: S608
        elif lock:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(policy_id, customer_id)])
            return {}
        else:
            return {}
        row = cursor.fetchone()
    return _as_dict(row[0] if row else None)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # jsonb as text, depending on the driver's loaders
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _window_rows(cap: Cap, *, policy_id: str, customer_id: str, now: datetime) -> Any:
    # No upper bound on `at`: a worker whose clock lags another's still counts its rows.
    return PolicyUsage.objects.filter(
        policy_id=policy_id,
        customer_id=customer_id,
        action_type__in=cap.actions,
        at__gt=now - cap.window,
    )


def counts(*, policy_id: str, customer_id: str, caps: Sequence[Cap], now: datetime) -> list[int]:
    """Each cap's actions in its window, at most its count (reads only, takes no lock)."""
    return [
        _window_rows(cap, policy_id=policy_id, customer_id=customer_id, now=now)[
            : cap.count
        ].count()
        for cap in caps
    ]


def take(
    *,
    policy_id: str,
    customer_id: str,
    action_type: str,
    caps: Sequence[Cap],
    now: datetime,
    run_id: str,
) -> tuple[list[int], bool]:
    """Under the lock: each cap's count (at most its count) and whether the ledger row
    of one more action was written (every cap allowed it)."""
    if connection.vendor != "postgresql":
        found = counts(policy_id=policy_id, customer_id=customer_id, caps=caps, now=now)
        allowed = all(n < cap.count for n, cap in zip(found, caps, strict=True))
        if allowed:
            PolicyUsage.objects.create(
                policy_id=policy_id,
                customer_id=customer_id,
                action_type=action_type,
                at=now,
                workflow_run_id=run_id,
            )
        return found, allowed
    params: list[Any] = []
    for cap in caps:
        params += [policy_id, customer_id, list(cap.actions), now - cap.window, cap.count]
    params += [policy_id, customer_id, action_type, now, run_id]
    params += [cap.count for cap in caps]
    with connection.cursor() as cursor:
        cursor.execute(_take_sql(len(caps)), params)
        row = cursor.fetchone()
    assert row is not None
    return [int(n) for n in row[:-1]], bool(row[-1])


@functools.cache
def _take_sql(caps: int) -> str:
    """The check-and-take for `caps` caps: n0..nK (each cap's count, at most the cap),
    then 1 if the ledger row was inserted, else 0. Only table and column names are
    formatted in; every value is a parameter."""
    table = connection.ops.quote_name(PolicyUsage._meta.db_table)
    window = (
        f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE policy_id = %s "  # noqa: S608
        "AND customer_id = %s AND action_type = ANY(%s) AND at > %s LIMIT %s) AS w)"
    )
    names = [f"n{i}" for i in range(caps)]
    counted = ", ".join(f"{window} AS {name}" for name in names)
    allowed = " AND ".join(f"{name} < %s" for name in names)
    insert = (
        f"INSERT INTO {table} (policy_id, customer_id, action_type, at, workflow_run_id) "  # noqa: S608
        f"SELECT %s, %s, %s, %s, %s FROM counts WHERE {allowed} RETURNING 1"
    )
    return (
        f"WITH counts AS (SELECT {counted}), taken AS ({insert}) "  # noqa: S608
        f"SELECT {', '.join(names)}, (SELECT count(*) FROM taken) FROM counts"
    )
