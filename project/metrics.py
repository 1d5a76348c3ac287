"""GET /metrics: what the machines do, in the Prometheus text format.

Every figure is read from the database when Prometheus scrapes, by the sources the
apps register in AppConfig.ready() (`pending_work_register`, `metric_source_register`;
project imports no app). The database is the source of truth for background work, so
any web process on any machine answers the same exact figures, however many processes
do the work; nothing is counted in process memory. Each source's queries must be
served by an index and bounded (counts stop at HERALD_METRICS_COUNT_CAP): a scrape
every few seconds must not load the database.

Who may scrape (`metrics_refusal`): loopback clients (HERALD_METRICS_ALLOW_LOOPBACK),
and any address with `Authorization: Bearer <HERALD_METRICS_TOKEN>`. The address is
project.api.ratelimit.client_address's (REMOTE_ADDR unless HERALD_TRUSTED_PROXY_COUNT
says which X-Forwarded-For entry to believe). The endpoint is a plain Django view: no
API key, no rate limit, no session, and not in the OpenAPI document.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from project.api.errors import json_error_response
from project.api.ratelimit import client_address

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backlog:
    """Work of one kind that is due and not done: how much (counted up to the cap)
    and since when the oldest of it has been due (None: nothing is due)."""

    pending: int
    oldest_due_at: datetime | None


# (now, cap) -> the backlog of one kind of work.
BacklogSource = Callable[[datetime, int], Backlog]
# (now, cap) -> metric families.
MetricSource = Callable[[datetime, int], Iterable[Metric]]

_BACKLOGS: dict[str, tuple[str, BacklogSource]] = {}
_SOURCES: dict[str, MetricSource] = {}


def pending_work_register(*, name: str, queue: str, source: BacklogSource) -> None:
    """Count a kind of work in `herald_pending_work{queue}` and
    `herald_oldest_pending_seconds{queue}` (several kinds may share a queue: their
    counts add up, the oldest wins). Call from AppConfig.ready()."""
    _BACKLOGS[name] = (queue, source)


def metric_source_register(*, name: str, source: MetricSource) -> None:
    """Add the metric families `source` yields to every scrape. Call from AppConfig.ready()."""
    _SOURCES[name] = source


# ---------------------------------------------------------------- helpers for sources


def capped_count(queryset: QuerySet[Any], cap: int, field: str = "pk") -> int:
    """COUNT(*) of at most `cap` rows: a backlog of millions costs no more than `cap`.
    Name a `field` the filtering index holds, so the index answers alone (an
    index-only scan)."""
    return queryset.order_by().values(field)[:cap].count()


def oldest(queryset: QuerySet[Any], field: str) -> datetime | None:
    """The smallest `field` of `queryset` (one probe of an index leading with it)."""
    value = queryset.order_by(field).values_list(field, flat=True).first()
    return value if isinstance(value, datetime) else None


def backlog_of(queryset: Callable[[datetime], QuerySet[Model]], due_field: str) -> BacklogSource:
    """A BacklogSource for rows `queryset(now)` selects, due since their `due_field`."""

    def source(now: datetime, cap: int) -> Backlog:
        rows = queryset(now)
        return Backlog(capped_count(rows, cap, due_field), oldest(rows, due_field))

    return source


def seconds_since(then: datetime | None, now: datetime) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


# ---------------------------------------------------------------- the collector


class DatabaseCollector(Collector):
    """Runs every registered source on each scrape (see the module docstring).

    A source that fails (a query timed out, the database is down) is logged and left
    out of that scrape (with the whole queue, for a backlog), and
    `herald_metrics_source_up{source}` says 0 for it, so one broken figure neither
    hides the others nor goes unnoticed.
    """

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        cap = settings.HERALD_METRICS_COUNT_CAP
        up = GaugeMetricFamily(
            "herald_metrics_source_up",
            "1 if the source's figures were read on this scrape, 0 if its queries failed.",
            labels=["source"],
        )
        pending: dict[str, int] = {}
        oldest_due: dict[str, datetime | None] = {}
        unknown: set[str] = set()
        for name, (queue, backlog_source) in list(_BACKLOGS.items()):
            pending.setdefault(queue, 0)
            oldest_due.setdefault(queue, None)
            backlog = _run(name, up, backlog_source, now, cap)
            if backlog is None:
                unknown.add(queue)  # left out: a part of it would read as all of it
                continue
            pending[queue] += backlog.pending
            when, current = backlog.oldest_due_at, oldest_due[queue]
            if when is not None:
                oldest_due[queue] = when if current is None else min(current, when)
        work = GaugeMetricFamily(
            "herald_pending_work",
            f"Work due and not done, per queue (each kind of work counted up to {cap}).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "herald_oldest_pending_seconds",
            "Seconds since the oldest work of the queue became due (0: nothing is due).",
            labels=["queue"],
        )
        for queue in sorted(pending.keys() - unknown):
            work.add_metric([queue], pending[queue])
            age.add_metric([queue], seconds_since(oldest_due[queue], now))
        yield work
        yield age
        for name, source in list(_SOURCES.items()):
            families = _run(name, up, _listed(source), now, cap)
            yield from families or []
        yield up


def _listed(source: MetricSource) -> Callable[[datetime, int], list[Metric]]:
    """The source's families read at once (a generator runs its queries while iterated)."""
    return lambda now, cap: list(source(now, cap))


def _run(
    name: str, up: GaugeMetricFamily, read: Callable[[datetime, int], T], now: datetime, cap: int
) -> T | None:
    try:
        result = read(now, cap)
    except Exception:
        logger.exception("Metrics source %s failed", name)
        up.add_metric([name], 0)
        return None
    up.add_metric([name], 1)
    return result


# Herald's own registry: the default one would add the answering process's own
# figures (CPU, memory), which say nothing about the deployment behind a load balancer.
# auto_describe=False: registering must not run the sources (no database at import).
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


# ---------------------------------------------------------------- who may scrape


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """None if the request may read the metrics, else the answer (the one error shape).

    A bearer token is checked whenever one is sent (a wrong one is refused even from
    loopback: it is a misconfigured scraper); without one, loopback clients are let in.
    """
    expected = settings.HERALD_METRICS_TOKEN
    given = _bearer_token(request)
    if given is not None:
        if expected and hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return _unauthorized("The bearer token is not the metrics token.")
    if settings.HERALD_METRICS_ALLOW_LOOPBACK and _is_loopback(client_address(request)):
        return None
    if expected:
        return _unauthorized("Send the metrics token as `Authorization: Bearer <token>`.")
    return json_error_response(
        403, "Metrics are served to loopback clients only (HERALD_METRICS_TOKEN is not set)."
    )


def _unauthorized(message: str) -> HttpResponse:
    response = json_error_response(401, message)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


# ---------------------------------------------------------------- the view


@csrf_exempt
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: the figures in the exposition format the scraper asks for (the
    Prometheus text format, or OpenMetrics when its Accept header prefers that)."""
    if request.method not in ("GET", "HEAD"):
        response = json_error_response(405, f"Method {request.method} is not allowed.")
        response["Allow"] = "GET, HEAD"
        return response
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    figures = HttpResponse(encoder(REGISTRY), content_type=content_type)
    figures["Cache-Control"] = "no-store"
    return figures
