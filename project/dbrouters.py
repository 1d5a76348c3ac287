"""The optional read replica (HERALD_READ_REPLICA_URL): list reads go there, the rest not.

A streaming replica lags the primary by a moment, so only reads that can show a
moment-old page go to it: the admin's change lists and the API's list (collection) GETs,
the pages that scan and count the most. Everything else stays on the primary:
1. writes (and every read of a request after its first write: read-your-writes);
2. reads inside a transaction (they must see what the transaction locked or wrote);
3. reads of the tables that decide who may do what (API keys, users, sessions, login
   throttling) and of anything outside Herald's business data (idempotency answers,
   rate-limit counters, the audit trail): a key revoked a moment ago must not work;
4. every request that is not a list read.

`ReplicaReadsMiddleware` marks a request as a list read once its URL is resolved
(`LIST_VIEWS`); `ReadReplicaRouter` sends that request's reads of business data to the
`replica` alias until the request writes. settings.py installs both only when
HERALD_READ_REPLICA_URL is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
# Apps whose tables hold Herald's business data, the lists people page through.
REPLICA_APPS = frozenset({"customers", "events_app", "automation"})
# Tables of those apps that decide access: always read from the primary.
PRIMARY_ONLY_MODELS = frozenset({"events_app.apiclient"})
# URL names of the API's list GETs (a name of the API's URLconf: one place to add one).
LIST_VIEWS = frozenset(
    {
        "events",
        "event-property-records",
        "customer-events",
        "event-types",
        "customers",
        "schedules",
        "schedule-runs",
        "webhooks",
        "deliveries",
        "workflows",
        "workflow-runs",
    }
)
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class _ListRead:
    wrote: bool = False


_list_read: ContextVar[_ListRead | None] = ContextVar("herald_list_read", default=None)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within this block, reads of business data may go to the replica (the router
    still keeps the reads named in the module docstring on the primary)."""
    token = _list_read.set(_ListRead())
    try:
        yield
    finally:
        _list_read.reset(token)


def is_list_view(request: HttpRequest) -> bool:
    """A GET of an admin change list or of an API collection."""
    match = request.resolver_match
    if request.method not in READ_METHODS or match is None:
        return False
    if match.namespace == "admin":
        return bool(match.url_name and match.url_name.endswith("_changelist"))
    return match.url_name in LIST_VIEWS


def _replicable(model: type[Model]) -> bool:
    """Business data: what list reads may read from the replica."""
    meta = model._meta
    return meta.app_label in REPLICA_APPS and meta.label_lower not in PRIMARY_ONLY_MODELS


class ReadReplicaRouter:
    """Django database router: see the module docstring."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        state = _list_read.get()
        if state is None or state.wrote or not _replicable(model):
            return None  # the default alias: the primary
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return None
        return REPLICA

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        state = _list_read.get()
        if state is not None and _replicable(model):
            # From now on this request reads its own writes. A write to the other tables
            # (an API key's last use, say) changes nothing a list shows.
            state.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        return True  # both aliases hold the same data

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS  # the replica follows the primary's schema


class ReplicaReadsMiddleware:
    """Marks admin change-list and API list GETs as list reads (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _list_read.set(None)
        try:
            return self.get_response(request)
        finally:
            _list_read.reset(token)

    def process_view(self, request: HttpRequest, *args: Any) -> None:
        if is_list_view(request):
            _list_read.set(_ListRead())
