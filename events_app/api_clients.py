"""API clients: creating, authenticating and revoking keys.

A key's secret is shown once and stored only as its SHA-256. Authentication
reads the client by that hash through a per-process cache of at most a second
(`api_key_cache`), which revocation clears at once in the revoking process; every
other process reads the row again within that second.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from events_app.models import ApiClient
from project.audit.services import audit_record, audit_snapshot
from project.errors import ConflictError, ValidationFailed

API_KEY_PREFIX = "hrld_"
AUDIT_TYPE = "api_client"
# last_used_at changes on use, not by anyone's decision.
AUDIT_EXCLUDE = ("last_used_at",)
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_client_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create an API client and return it with its secret (shown once, never stored)."""
    scopes = scopes or list(ApiClient.ALL_SCOPES)
    unknown = set(scopes) - set(ApiClient.ALL_SCOPES)
    if unknown:
        raise ValidationFailed(f"Unknown scope(s): {', '.join(sorted(unknown))}.")
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            client = ApiClient.objects.create(
                name=name,
                secret_hash=ApiClient.hash_secret(secret),
                secret_prefix=secret[:12],
                scopes=",".join(s for s in ApiClient.ALL_SCOPES if s in scopes),
            )
            audit_record(
                action="created",
                obj_type=AUDIT_TYPE,
                obj_id=client.pk,
                after=audit_snapshot(client, exclude=AUDIT_EXCLUDE),
            )
    except IntegrityError:
        raise ConflictError(f"An API client named '{name}' already exists.") from None
    return client, secret


_API_CLIENT_COLUMNS = [f.attname for f in ApiClient._meta.concrete_fields]
_API_CLIENT_SQL = (
    f"SELECT {', '.join(str(f.column) for f in ApiClient._meta.concrete_fields)} "  # noqa: S608
    "FROM events_app_apiclient "
    "WHERE secret_hash = %s AND revoked_at IS NULL"
)


class _ApiKeyCache:
    """Active API clients by secret hash, each trusted for `API_KEY_CACHE_SECONDS`.

    Authenticating by a database read on every request was a round trip and a
    large share of a single POST /events' server CPU (docs/performance.md). A key
    changes only by revocation (and its rate budgets, edited in the admin), so a
    copy of the row for at most a second is safe: `api_client_revoke` drops the key
    here at once (this process), and every other process re-reads it within the TTL
    (one query per key and process a second, whatever the request rate). Keyed by the
    SHA-256 of the secret, never the secret; unknown secrets are not cached, so
    a guess always costs a query and a new key works immediately. Time is
    `time.monotonic` (immune to clock steps and to frozen test clocks).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiClient]] = {}
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic  # replaceable in tests

    def get(self, digest: str) -> ApiClient | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, client = entry
        if self.clock() >= expires:
            with self._lock:
                if self._entries.get(digest) is entry:
                    del self._entries[digest]
            return None
        return client

    def put(self, digest: str, client: ApiClient) -> None:
        ttl = settings.API_KEY_CACHE_SECONDS
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= _API_KEY_CACHE_SIZE:
                # Bounded: drop everything rather than track recency (keys are few;
                # this only guards against unbounded growth).
                self._entries.clear()
            self._entries[digest] = (self.clock() + ttl, client)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)


_API_KEY_CACHE_SIZE = 10_000
api_key_cache = _ApiKeyCache()


def api_client_authenticate(
    *, secret: str, name: str | None = None, before_lookup: Callable[[], None] | None = None
) -> ApiClient | None:
    """The active client holding this secret (and name, for Basic auth), or None.

    A revoked key stops working at once in the process that revoked it and within
    `settings.API_KEY_CACHE_SECONDS` (at most a second) everywhere else (see
    `_ApiKeyCache`). `before_lookup` runs before a key not in the cache is looked up
    in the database (it may raise to refuse the request without that query).
    """
    digest = ApiClient.hash_secret(secret)
    client = api_key_cache.get(digest)
    if client is None:
        if before_lookup is not None:
            before_lookup()
        # Raw SQL: compiling the ORM query cost more CPU than the query itself
        # (secret_hash is unique: at most one row).
        with connection.cursor() as cursor:
            cursor.execute(_API_CLIENT_SQL, [digest])
            row = cursor.fetchone()
        if row is None:
            return None
        client = ApiClient.from_db(connection.alias, _API_CLIENT_COLUMNS, row)
        if client.last_used_at is not None and timezone.is_naive(client.last_used_at):
            # A raw cursor skips the ORM's converters: SQLite (the embedded default)
            # hands back naive datetimes, which are UTC.
            client.last_used_at = client.last_used_at.replace(tzinfo=UTC)
        api_key_cache.put(digest, client)
    if name is not None and client.name != name:
        return None
    now = timezone.now()
    # Record use at one-minute resolution: a write per request would cost more
    # than the request itself.
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return client


RATE_LIMIT_FIELDS = ("ingest_rate_limit", "api_rate_limit")


def api_client_set_rate_limits(
    *, client: ApiClient, ingest_rate_limit: int | None, api_rate_limit: int | None
) -> None:
    """Set a client's own rate budgets (None = the settings default, 0 = unlimited); every
    process applies them within `settings.API_KEY_CACHE_SECONDS`."""
    with transaction.atomic():
        before = audit_snapshot(client, exclude=AUDIT_EXCLUDE)
        ApiClient.objects.filter(pk=client.pk).update(
            ingest_rate_limit=ingest_rate_limit, api_rate_limit=api_rate_limit
        )
        client.ingest_rate_limit, client.api_rate_limit = ingest_rate_limit, api_rate_limit
        audit_record(
            action="updated",
            obj_type=AUDIT_TYPE,
            obj_id=client.pk,
            before=before,
            after=audit_snapshot(client, exclude=AUDIT_EXCLUDE),
        )
    api_key_cache.forget(client.secret_hash)


def api_client_revoke(*, client: ApiClient) -> None:
    """Revoke a key; requests with it fail with 401 from then on in this process, and
    within `settings.API_KEY_CACHE_SECONDS` (at most a second) in every other one."""
    with transaction.atomic():
        before = audit_snapshot(client, exclude=AUDIT_EXCLUDE)
        revoked = ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if revoked:
            client.refresh_from_db(fields=["revoked_at"])
            audit_record(
                action="revoked",
                obj_type=AUDIT_TYPE,
                obj_id=client.pk,
                before=before,
                after=audit_snapshot(client, exclude=AUDIT_EXCLUDE),
            )
    api_key_cache.forget(client.secret_hash)
