"""Rate limits: fixed-window counters shared by every process, and their headers.

A policy allows `quota` requests per `window` seconds for one key (an API client's
budget, an address's failed authentications). The window is fixed and aligned to
the wall clock (windows start at multiples of `window` seconds since the epoch), so
every process agrees on it without talking: a request belongs to the window its
arrival time falls in, and the counter of that window is incremented atomically by
one statement on the shared store. Exactly `quota` increments of one window see a
count at most `quota`, however many processes race; those are admitted, the rest
are refused with 429 until the window ends. (A fixed window lets a client spend
its quota at the end of one window and again at the start of the next; the
simplicity buys one round trip per request and an exact count.)

Stores:
- Redis (HERALD_RATE_LIMIT_REDIS_URL): one script (INCR, and EXPIRE on the window's
  first request), one round trip. If Redis cannot be reached the request is admitted
  uncounted and Redis is not asked again for a few seconds: a limiter outage must not
  take the API down.
- the database otherwise (the embedded default): one upsert of a counter row that
  returns the new count (PostgreSQL and SQLite both do INSERT … ON CONFLICT …
  RETURNING), prepared on PostgreSQL.

Every answer to a counted request carries the IETF httpapi draft's headers
(draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "ingest";q=600;w=60` and
`RateLimit: "ingest";r=599;t=42` (remaining quota, seconds until the window ends),
added by `RateLimitHeadersMiddleware` from what the request recorded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions, status

from project.sql import fetch_one

logger = logging.getLogger(__name__)

# The attribute of the Django request that holds the decisions made for it.
REQUEST_ATTRIBUTE = "herald_rate_limits"
REDIS_KEY_PREFIX = "herald:ratelimit:"
# After Redis failed, requests are admitted uncounted this long before it is tried again.
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window: int


@dataclass(frozen=True)
class Decision:
    """The state of one policy's window after counting one request."""

    policy: Policy
    count: int
    reset: int  # seconds until the window ends (at least 1)

    @property
    def admitted(self) -> bool:
        return self.count <= self.policy.quota

    @property
    def remaining(self) -> int:
        return max(self.policy.quota - self.count, 0)


class RateLimited(exceptions.APIException):
    """429: the budget of this window is spent; `wait` becomes Retry-After."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, decision: Decision, message: str) -> None:
        super().__init__(detail=message)
        self.wait = decision.reset


class Store(Protocol):
    def hit(self, key: str, window_start: int, window: int) -> int | None:
        """Count one request in this window of `key`; the count so far (this one
        included), or None when the store cannot count (the request is admitted)."""

    def peek(self, key: str, window_start: int) -> int | None:
        """The count so far in this window of `key`, without counting."""


# Counts one request of a window atomically: the key expires a second after the window.
_HIT_SCRIPT = (
    "local count = redis.call('INCR', KEYS[1]) "
    "if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return count"
)


class RedisStore:
    """The counters in Redis.

    `hit` runs on every API request, so it sends its one command on connections of
    its own instead of through redis-py's client (connection pool with locks, retry
    wrapper, pipeline objects), which cost more CPU than the round trip itself
    (docs/performance.md). A connection is popped from `_idle` for one call and put
    back after it: each concurrent thread has its own without a lock (list pop and
    append are atomic), there are never more than threads, and one that failed is
    dropped. A forked child starts with none (a socket must not be shared).
    """

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._down_until = 0.0
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def _down(self, exc: redis.RedisError) -> None:
        self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
        logger.warning("Rate limits not counted for %gs: Redis: %s", REDIS_RETRY_SECONDS, exc)

    def _call(self, work: Callable[[], Any]) -> Any:
        if time.monotonic() < self._down_until:
            return None
        try:
            return work()
        except redis.RedisError as exc:
            self._down(exc)
            return None

    def _connection(self) -> Any:
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            pool = self.client.connection_pool
            return pool.connection_class(**pool.connection_kwargs)

    def hit(self, key: str, window_start: int, window: int) -> int | None:
        if time.monotonic() < self._down_until:
            return None
        connection = self._connection()
        try:
            name = f"{REDIS_KEY_PREFIX}{key}:{window_start}"
            connection.send_command("EVAL", _HIT_SCRIPT, 1, name, window + 1)
            count = connection.read_response()
        except redis.RedisError as exc:
            connection.disconnect()
            self._down(exc)
            return None
        self._idle.append(connection)
        return int(count)

    def peek(self, key: str, window_start: int) -> int | None:
        value = self._call(lambda: self.client.get(f"{REDIS_KEY_PREFIX}{key}:{window_start}"))
        return int(value) if value is not None else None


class DatabaseStore:
    """A counter row per key: (key, window_start, count), one upsert per request.

    The row of a key is reset when a later window starts; a request that computed
    an earlier window (its clock read just before the turn) counts in the row's
    current one, so the count never goes backwards.
    """

    def __init__(self, table: str) -> None:
        self.table = table

    def hit(self, key: str, window_start: int, window: int) -> int | None:
        table = connection.ops.quote_name(self.table)
        sql = (
            f"INSERT INTO {table} AS c (key, window_start, count) VALUES (%s, %s, 1) "  # noqa: S608
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN excluded.window_start > c.window_start THEN 1 "
            "ELSE c.count + 1 END, "
            "window_start = CASE WHEN excluded.window_start > c.window_start "
            "THEN excluded.window_start ELSE c.window_start END "
            "RETURNING count"
        )
        # Prepared on PostgreSQL (project.sql): the text is the same for every request.
        row = fetch_one(sql, [key, window_start])
        assert row is not None  # an upsert with RETURNING returns its row
        return int(row[0])

    def peek(self, key: str, window_start: int) -> int | None:
        table = connection.ops.quote_name(self.table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count FROM {table} WHERE key = %s AND window_start = %s",  # noqa: S608
                [key, window_start],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else None


class RateLimiter:
    """Counts requests against policies in the configured store.

    `table`: the counter table of the database store (owned by the app that uses
    the limiter). `clock`: wall-clock seconds, replaceable in tests.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.clock: Callable[[], float] = time.time
        self._store: tuple[str, Store] | None = None
        self._lock = threading.Lock()

    def store(self) -> Store:
        url = settings.HERALD_RATE_LIMIT_REDIS_URL
        current = self._store
        if current is None or current[0] != url:
            with self._lock:
                store: Store = RedisStore(url) if url else DatabaseStore(self.table)
                current = self._store = (url, store)
        return current[1]

    def _window(self, policy: Policy) -> tuple[int, int]:
        now = self.clock()
        start = int(now) // policy.window * policy.window
        return start, max(int(start + policy.window - now + 0.999), 1)

    def hit(self, policy: Policy, key: str) -> Decision | None:
        """Count one request; the decision, or None when it could not be counted."""
        start, reset = self._window(policy)
        count = self.store().hit(f"{policy.name}:{key}", start, policy.window)
        return None if count is None else Decision(policy, count, reset)

    def peek(self, policy: Policy, key: str) -> Decision:
        """The window's state without counting (count 0 when nothing was counted)."""
        start, reset = self._window(policy)
        count = self.store().peek(f"{policy.name}:{key}", start)
        return Decision(policy, count or 0, reset)


def decision_record(request: HttpRequest, decision: Decision | None) -> None:
    """Remember a decision for the answer's headers (the last one per policy wins)."""
    if decision is None:
        return
    decisions: dict[str, Decision] = request.__dict__.setdefault(REQUEST_ATTRIBUTE, {})
    decisions[decision.policy.name] = decision


def rate_limit_headers(decisions: list[Decision]) -> dict[str, str]:
    """The draft's two fields, one list member per policy."""
    return {
        "RateLimit-Policy": ", ".join(
            f'"{d.policy.name}";q={d.policy.quota};w={d.policy.window}' for d in decisions
        ),
        "RateLimit": ", ".join(f'"{d.policy.name}";r={d.remaining};t={d.reset}' for d in decisions),
    }


class RateLimitHeadersMiddleware:
    """Adds RateLimit-Policy / RateLimit to every answer of a request that was counted
    (admitted, refused, or failed later for any reason)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        decisions = request.__dict__.get(REQUEST_ATTRIBUTE)
        if decisions:
            for name, value in rate_limit_headers(list(decisions.values())).items():
                response[name] = value
        return response


def client_address(request: HttpRequest) -> str:
    """The address a request came from: REMOTE_ADDR, or with HERALD_TRUSTED_PROXY_COUNT
    proxies in front, the X-Forwarded-For entry that many places from the right (the
    address the outermost trusted proxy saw; entries further left are the client's word)."""
    hops = settings.HERALD_TRUSTED_PROXY_COUNT
    remote = str(request.META.get("REMOTE_ADDR", ""))
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    # Fewer entries than proxies: the header did not come through them all.
    return forwarded[-hops] if len(forwarded) >= hops else remote
