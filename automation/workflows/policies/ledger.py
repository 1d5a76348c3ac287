"""The caps' check-and-take: one statement on PostgreSQL, exact under concurrency.

Each (policy, customer) has a PolicyCounter row whose `entries` hold, per cap, the
times of the counted actions still inside the cap's window (at most the cap's count).
One statement decides and takes:

1. `INSERT … ON CONFLICT (policy, customer) DO UPDATE SET entries = … WHERE caps_key =
   <the caps' fingerprint> AND <every cap listing the type has room> RETURNING`
   upserts the counter. ON CONFLICT DO UPDATE locks the existing row and evaluates
   its WHERE and SET on the row's latest committed version, not on the statement's
   snapshot: a run that waited for another's lock sees that run's take. So the lock
   and the count are one step, and no second statement (an advisory lock, then a
   count that starts after it: under READ COMMITTED a statement's snapshot predates
   a lock it waits for) is needed. The SET appends the action's time to every cap
   that lists its type, dropping entries that left their window.
2. A data-modifying CTE inserts the ledger row (PolicyUsage) when the counter took:
   "why capped" counts after a rebuild, the simulation, the test endpoint, merges and
   privacy deletes read the ledger.
3. When quiet hours are configured, the same statement reads the customer's time-zone
   attribute. The verdict checks quiet hours first; a take made while quiet hours
   block is undone by rolling back the caller's savepoint (services.PolicyBlocked).

Per-cap timestamps rather than hourly buckets keep the rolling window exact to the
microsecond (the ledger's meaning) at a cost bounded by the caps' counts.

A row the DO UPDATE's WHERE refuses is still locked by the statement (PostgreSQL locks
every conflicting row), and RETURNING gives nothing; a second statement then reads the
locked row's latest version: the caps are full (capped: its entries give the counts of
the reason), or it is stale -- its `caps_key` differs because a policy edit changed
the caps, a merge or its undo moved ledger rows, or its ledger predates counters. A
stale counter is rebuilt from the ledger by statements that start after the lock was
granted (so they see every committed take), and the check runs again: a cap edit costs
each pair one rebuild. No counter row at all means the pair never took (the data
migration gave every older ledger pair a stale one): the INSERT takes with nothing
counted.

SQLite (the embedded default) has one writer at a time: the ledger through the ORM,
no counter.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from automation.workflows.policies.models import PolicyCounter, PolicyUsage
from automation.workflows.policies.spec import Cap
from customers.models import Customer
from project.sql import fetch_one

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Entries are kept this long past their window, so a worker whose clock lags the one
# that trimmed them still counts them (the count itself filters by the window).
CLOCK_SKEW = timedelta(minutes=5)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


@functools.cache
def caps_key(caps: tuple[Cap, ...]) -> str:
    """The fingerprint of a policy's caps (a counter counted for other caps is stale)."""
    shape = [[c.count, c.window.total_seconds(), list(c.actions)] for c in caps]
    return hashlib.blake2b(json.dumps(shape).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Taken:
    """What the check-and-take found: whether the action was taken, else each listing
    cap's count in its window (at most the cap's count); and the customer's time-zone
    attribute (any JSON value; None when absent or not asked for)."""

    counts: list[int]
    taken: bool
    tz_name: Any = None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def time_zone_attribute(*, customer_id: str, attribute: str) -> Any:
    """The customer's attribute `attribute` (any JSON value; None when absent)."""
    found = Customer.objects.filter(pk=customer_id).values_list("attributes", flat=True).first()
    attributes = _json(found)
    return attributes.get(attribute) if isinstance(attributes, dict) else None


def _window_rows(cap: Cap, *, policy_id: str, customer_id: str, now: datetime) -> Any:
    # No upper bound on `at`: a worker whose clock lags another's still counts its rows.
    return PolicyUsage.objects.filter(
        policy_id=policy_id,
        customer_id=customer_id,
        action_type__in=cap.actions,
        at__gt=now - cap.window,
    )


def counts(*, policy_id: str, customer_id: str, caps: Sequence[Cap], now: datetime) -> list[int]:
    """Each cap's actions in its window from the ledger, at most its count (reads only)."""
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
    caps: tuple[Cap, ...],
    now: datetime,
    run_id: str,
    tz_attribute: str | None = None,
) -> Taken:
    """Check the caps of the policy (`caps`: all of them, in the policy's order) that list
    `action_type` and take one action if every one allows it, writing its ledger row.
    With `tz_attribute`, also read that attribute of the customer.

    Call inside the transaction (savepoint) that performs the action: the counter stays
    locked until it commits, and a rollback undoes the take."""
    listing = [i for i, cap in enumerate(caps) if action_type in cap.actions]
    if connection.vendor != "postgresql":
        return _take_orm(
            policy_id=policy_id,
            customer_id=customer_id,
            action_type=action_type,
            caps=[caps[i] for i in listing],
            now=now,
            run_id=run_id,
            tz_attribute=tz_attribute,
        )
    key = caps_key(caps)
    cuts = [_micros(now - caps[i].window) for i in listing]
    skew = CLOCK_SKEW // _MICROSECOND
    params: dict[str, Any] = {
        "policy": policy_id,
        "customer": customer_id,
        "key": key,
        "first": json.dumps([[i, _micros(now)] for i in listing]),
        # The listing caps: index, count, the window's start and the trimming point.
        "caps": json.dumps(
            [
                {"i": i, "lim": caps[i].count, "cut": cut, "keep": cut - skew}
                for i, cut in zip(listing, cuts, strict=True)
            ]
        ),
        "action": action_type,
        "now": now,
        "run": run_id,
        "attribute": tz_attribute,
    }
    sql = _take_sql(read_attribute=tz_attribute is not None)
    for _attempt in range(2):
        row = fetch_one(sql, params)  # prepared after a few uses: planned once
        assert row is not None
        taken, tz_name = row
        if taken:
            return Taken(counts=[], taken=True, tz_name=_json(tz_name))
        # Not taken: the counter is locked by this transaction now, so a new statement
        # reads its latest version. Capped, or stale (then rebuilt, and checked again).
        counter = PolicyCounter.objects.filter(policy_id=policy_id, customer_id=customer_id)
        caps_key_now, entries = counter.values_list("caps_key", "entries").get()
        if caps_key_now == key:
            counted = [
                min(sum(1 for index, at in entries if index == i and at > cut), caps[i].count)
                for i, cut in zip(listing, cuts, strict=True)
            ]
            return Taken(counts=counted, taken=False, tz_name=_json(tz_name))
        _rebuild(policy_id=policy_id, customer_id=customer_id, caps=caps, key=key, now=now)
    raise RuntimeError(f"policy counter {policy_id}/{customer_id} stayed stale after a rebuild")


def _rebuild(
    *, policy_id: str, customer_id: str, caps: tuple[Cap, ...], key: str, now: datetime
) -> None:
    """Recount a locked counter from the ledger for `caps`. Every statement here starts
    after the lock was granted, so it sees the ledger rows of every committed take."""
    entries: list[list[int]] = []
    for index, cap in enumerate(caps):
        window = _window_rows(cap, policy_id=policy_id, customer_id=customer_id, now=now)
        times = window.order_by("-at").values_list("at", flat=True)[: cap.count]
        entries += [[index, _micros(at)] for at in times]
    PolicyCounter.objects.filter(policy_id=policy_id, customer_id=customer_id).update(
        caps_key=key, entries=entries
    )


def _take_orm(
    *,
    policy_id: str,
    customer_id: str,
    action_type: str,
    caps: list[Cap],
    now: datetime,
    run_id: str,
    tz_attribute: str | None,
) -> Taken:
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
    tz_name = (
        time_zone_attribute(customer_id=customer_id, attribute=tz_attribute)
        if tz_attribute is not None
        else None
    )
    return Taken(counts=found, taken=allowed, tz_name=tz_name)


@functools.cache
def _take_sql(*, read_attribute: bool) -> str:
    """The check-and-take: (1 if taken else NULL, the time-zone attribute as JSON text).
    Only table and column names are formatted in; every value is a parameter."""
    quote = connection.ops.quote_name
    counter = quote(PolicyCounter._meta.db_table)
    usage = quote(PolicyUsage._meta.db_table)
    customer = quote(Customer._meta.db_table)
    listing = "jsonb_to_recordset(%(caps)s::jsonb) AS cap(i int, lim int, cut bigint, keep bigint)"
    # Every listing cap has fewer than its count of entries newer than its window's start.
    allowed = (
        f"NOT EXISTS (SELECT 1 FROM {listing}"  # noqa: S608
        " WHERE (SELECT count(*) FROM jsonb_array_elements(c.entries) AS e"
        " WHERE (e->>0)::int = cap.i AND (e->>1)::bigint > cap.cut) >= cap.lim)"
    )
    # The entries, less those of the listing caps that left their window (and the skew).
    kept = (
        "COALESCE((SELECT jsonb_agg(e) FROM jsonb_array_elements(c.entries) AS e"  # noqa: S608
        f" WHERE NOT EXISTS (SELECT 1 FROM {listing}"
        " WHERE (e->>0)::int = cap.i AND (e->>1)::bigint <= cap.keep)), '[]'::jsonb)"
    )
    attribute = (
        f"(SELECT (attributes -> %(attribute)s::text)::text FROM {customer}"  # noqa: S608
        " WHERE id = %(customer)s)"
        if read_attribute
        else "NULL"
    )
    # ON CONFLICT DO UPDATE locks the row even when its WHERE is false (stale or capped):
    # the caller then reads it with a statement of its own.
    return (
        f"WITH counter AS (INSERT INTO {counter} AS c"  # noqa: S608
        " (policy_id, customer_id, caps_key, entries)"
        " VALUES (%(policy)s, %(customer)s, %(key)s::text, %(first)s::jsonb)"
        " ON CONFLICT (policy_id, customer_id) DO UPDATE"
        f" SET entries = {kept} || %(first)s::jsonb"
        f" WHERE c.caps_key = %(key)s::text AND {allowed}"
        " RETURNING 1 AS taken),"
        f" used AS (INSERT INTO {usage}"
        " (policy_id, customer_id, action_type, at, workflow_run_id)"
        " SELECT %(policy)s::text, %(customer)s::text, %(action)s::text, %(now)s::timestamptz,"
        " %(run)s::text FROM counter)"
        f" SELECT (SELECT taken FROM counter), {attribute}"
    )
