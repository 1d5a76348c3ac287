"""Privacy requests: filing them, and running them one at a time in the background.

`privacy_request_create` stores the request and hands it to the background after
commit; `privacy_request_run` runs one, on any worker, as often as it is called:

1. Claim: one conditional UPDATE takes a request that is `pending`, or `running`
   with a lapsed claim (its worker died), and stamps the claim (attempts, lease).
   Another worker's call finds nothing to claim and returns.
2. Run the type's handler (REQUEST_HANDLERS) and finish in one transaction: the
   handler's writes, the counts, `done` and the blanked clear identifier commit
   together, guarded by the claim, so a worker that lost its claim rolls back.
3. A handler that raises marks the request `failed` (its writes rolled back).

The row is the source of truth: `privacy_requests_sweep` (a periodic job) hands on
requests whose message was lost and those of dead workers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, cast

from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from customers.hooks import customer_export_sections
from customers.models import Customer, CustomerAlias
from customers.privacy.hashing import IdentifierKind, identifier_digest
from customers.privacy.locks import suppression_locks_take_covering
from customers.privacy.models import (
    PrivacyExport,
    PrivacyExportPart,
    PrivacyRequest,
    SuppressedIdentifier,
)
from customers.services import customer_delete
from project import background
from project.audit.context import Actor, actor_current, audit_actor

logger = logging.getLogger(__name__)

# The task that runs one request (customers.privacy.tasks), enqueued by name.
RUN_TASK = "customers.privacy_request_run"
# A running request's claim: longer than the longest delete; a worker that dies leaves
# the request to the sweeper once it lapses.
CLAIM_LEASE = timedelta(minutes=15)
# A pending request younger than this is left to the message its commit sent.
SWEEP_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 100

Kind = PrivacyRequest.IdentifierKind
Type = PrivacyRequest.Type
Status = PrivacyRequest.Status

# Customer aliases (customers.identity) of each identifier kind.
_ALIAS_KINDS = {
    Kind.EXTERNAL_ID: CustomerAlias.Kind.EXTERNAL,
    Kind.ANONYMOUS_ID: CustomerAlias.Kind.ANONYMOUS,
}
_ALIAS_IDENTIFIER = {alias: kind for kind, alias in _ALIAS_KINDS.items()}


def request_digest(kind: str, value: str) -> str:
    """The keyed hash of a request's identifier (customer ids too: the audit keeps no
    identifier in clear)."""
    return identifier_digest(cast("IdentifierKind", kind), value)


# ---------------------------------------------------------------- filing


def privacy_request_create(*, type: str, identifier_kind: str, value: str) -> PrivacyRequest:
    """File a request by the current actor (project.audit.context); it runs after commit.

    An identifier that matches no one still makes a request: it completes with zero
    counts (a suppress still puts the identifier on the list).
    """
    actor = actor_current()
    with transaction.atomic():
        request = PrivacyRequest.objects.create(
            type=type,
            identifier_kind=identifier_kind,
            identifier_digest=request_digest(identifier_kind, value),
            identifier_value=value,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_name=actor.name,
        )
        request_id = request.pk
        transaction.on_commit(lambda: _hand_on([request_id]))
    return request


def _hand_on(request_ids: list[str]) -> None:
    """Enqueue a run per request; a failure is logged, never raised (the sweeper runs
    them instead)."""
    try:
        background.enqueue_many(RUN_TASK, [(request_id,) for request_id in request_ids])
    except background.BrokerUnavailable:
        pass  # the breaker logged it; the sweeper hands them on
    except Exception:
        logger.exception(
            "Could not enqueue %d privacy requests; the sweeper will", len(request_ids)
        )


# ---------------------------------------------------------------- running


def export_expiry(now: datetime) -> datetime:
    """Until when an export made at `now` can be downloaded."""
    return now + timedelta(days=settings.HERALD_PRIVACY_EXPORT_DAYS)


class _ClaimLost(Exception):
    """Another worker took the request over while this one ran it."""


def privacy_request_run(*, request_id: str, now: datetime | None = None) -> bool:
    """Run one privacy request if it is due (see the module docstring); True if this call
    finished it (done or failed), False if there was nothing to claim or the claim was
    lost. Idempotent, safe on many workers at once."""
    now = now or timezone.now()
    claimed = PrivacyRequest.objects.filter(
        Q(status=Status.PENDING) | Q(status=Status.RUNNING, locked_until__lt=now), pk=request_id
    ).update(
        status=Status.RUNNING,
        attempts=F("attempts") + 1,
        locked_until=now + CLAIM_LEASE,
        started_at=Coalesce("started_at", now),
    )
    if not claimed:
        return False
    request = PrivacyRequest.objects.get(pk=request_id)
    mine = PrivacyRequest.objects.filter(
        pk=request_id, status=Status.RUNNING, attempts=request.attempts
    )
    actor = Actor(kind=request.actor_kind or "system", id=request.actor_id, name=request.actor_name)
    try:
        with audit_actor(actor), transaction.atomic():
            handler = REQUEST_HANDLERS[request.type]
            counts = handler.run(request, now)
            finished = timezone.now()
            expires = export_expiry(now) if request.type == Type.EXPORT else None
            if not mine.update(
                status=Status.DONE,
                counts=counts,
                identifier_value="",
                locked_until=None,
                finished_at=finished,
                export_expires_at=expires,
            ):
                raise _ClaimLost(request_id)
    except _ClaimLost:
        logger.warning("Privacy request %s was taken over by another worker", request_id)
        return False
    except Exception as exc:
        logger.exception("Privacy request %s failed", request_id)
        mine.update(
            status=Status.FAILED,
            # The exception's class only: a message may quote the identifier.
            error=f"{type(exc).__name__} (see the server log)",
            identifier_value="",
            locked_until=None,
            finished_at=timezone.now(),
        )
    return True


def privacy_requests_sweep(now: datetime) -> int:
    """The periodic job: hand on requests whose message was lost (pending past
    SWEEP_GRACE) and those of dead workers (running, claim lapsed); returns how many."""
    due = list(
        PrivacyRequest.objects.filter(
            Q(status=Status.PENDING, created_at__lt=now - SWEEP_GRACE)
            | Q(status=Status.RUNNING, locked_until__lt=now)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if due:
        _hand_on(due)
    return len(due)


def privacy_exports_expire(now: datetime) -> int:
    """The periodic job: delete the export documents past their expiry (their parts with
    them, by one DELETE: nothing is read); returns how many."""
    _, deleted = PrivacyExport.objects.filter(expires_at__lte=now).delete()
    return deleted.get(PrivacyExport._meta.label, 0)


# ---------------------------------------------------------------- finding the person


def customers_matching(kind: str, value: str) -> QuerySet[Customer]:
    """The customers an identifier names: by their own field or an alias. An email may
    name several customers (it is not unique); it matches whatever the case."""
    if kind == Kind.CUSTOMER_ID:
        match = Q(pk=value)
    elif kind == Kind.EMAIL:
        # Case-insensitive, as the suppression list hashes emails; no index serves it
        # (a scan of the customers, once per request).
        match = Q(email__iexact=value.strip())
    else:
        alias = CustomerAlias.objects.filter(kind=_ALIAS_KINDS[Kind(kind)], value=value)
        match = Q(**{kind: value}) | Q(pk__in=alias.values("customer_id"))
    return Customer.objects.filter(match).order_by("pk")


def _identifiers(request: PrivacyRequest, customers: list[Customer]) -> Iterator[tuple[str, str]]:
    """(kind, value) of every identifier the person is known by: the request's own
    (unless a customer id, which ingest never receives) and each customer's."""
    if request.identifier_kind != Kind.CUSTOMER_ID:
        yield request.identifier_kind, request.identifier_value
    for customer in customers:
        if customer.external_id:
            yield Kind.EXTERNAL_ID, customer.external_id
        if customer.anonymous_id:
            yield Kind.ANONYMOUS_ID, customer.anonymous_id
        if customer.email:
            yield Kind.EMAIL, customer.email
        for alias_kind, alias_value in customer.aliases.values_list("kind", "value"):
            yield _ALIAS_IDENTIFIER[CustomerAlias.Kind(alias_kind)], alias_value


def _count_name(label: str) -> str:
    """A count's name in the request's `counts`: a model label ("events_app.Event") as
    its plural ("events"); a hook's own name as it is."""
    if "." not in label:
        return label
    return str(apps.get_model(label)._meta.verbose_name_plural).replace(" ", "_")


# ---------------------------------------------------------------- the handlers


@dataclass(frozen=True)
class RequestHandler:
    """What one request type does; `run` is called inside the finishing transaction and
    returns the counts (a registry entry per type: REQUEST_HANDLERS)."""

    type: ClassVar[str]

    def run(self, request: PrivacyRequest, now: datetime) -> dict[str, int]:
        raise NotImplementedError


DELETE_COUNTS = (
    "customers",
    "customer_aliases",
    "events",
    "property_records",
    "workflow_runs",
    "segment_memberships",
    "deliveries_redacted",
    "deliveries_cancelled",
    "merge_records",
)


class Delete(RequestHandler):
    """Delete every customer the identifier names, with everything that hangs off them
    (customers.services.customer_delete, erasing)."""

    type = Type.DELETE

    def run(self, request: PrivacyRequest, now: datetime) -> dict[str, int]:
        return self.delete(
            list(customers_matching(request.identifier_kind, request.identifier_value))
        )

    @staticmethod
    def delete(customers: list[Customer]) -> dict[str, int]:
        counts = dict.fromkeys(DELETE_COUNTS, 0)
        for customer in customers:
            for label, n in customer_delete(customer=customer, erase=True).items():
                name = _count_name(label)
                counts[name] = counts.get(name, 0) + n
        return counts


class Suppress(RequestHandler):
    """Put every identifier of the person on the suppression list (keyed hashes), then
    delete them as `delete` does; an unknown identifier is still put on the list."""

    type = Type.SUPPRESS

    def run(self, request: PrivacyRequest, now: datetime) -> dict[str, int]:
        # Every identifier's lock before the customers are read for good: an ingest
        # creating one either committed before (its customer is found and deleted below)
        # or waits for this commit and then finds it listed (customers.privacy.locks).
        # The person's identifiers are only known from their customers, so the read is
        # repeated under the locks until it names no identifier beyond them.
        def read() -> tuple[tuple[list[Customer], set[tuple[str, str]]], set[str]]:
            customers = list(customers_matching(request.identifier_kind, request.identifier_value))
            digests = {
                (kind, identifier_digest(cast("IdentifierKind", kind), value))
                for kind, value in _identifiers(request, customers)
            }
            locks = {request.identifier_digest, *(digest for _, digest in digests)}
            return (customers, digests), locks

        customers, digests = suppression_locks_take_covering(read)
        SuppressedIdentifier.objects.bulk_create(
            [
                SuppressedIdentifier(kind=kind, digest=digest, request_id=request.pk)
                for kind, digest in sorted(digests)
            ],
            ignore_conflicts=True,
        )
        return {"identifiers_suppressed": len(digests), **Delete.delete(customers)}


class Unsuppress(RequestHandler):
    """Lift a suppression: the identifier's row, and every row the suppress requests
    that put it there (or that named it) added with it."""

    type = Type.UNSUPPRESS

    def run(self, request: PrivacyRequest, now: datetime) -> dict[str, int]:
        kind, digest = request.identifier_kind, request.identifier_digest
        by_row = SuppressedIdentifier.objects.filter(kind=kind, digest=digest).exclude(
            request_id=""
        )
        by_request = PrivacyRequest.objects.filter(
            type=Type.SUPPRESS, identifier_kind=kind, identifier_digest=digest
        )
        request_ids = {
            *by_row.values_list("request_id", flat=True),
            *by_request.values_list("pk", flat=True),
        }
        lifted = SuppressedIdentifier.objects.filter(
            Q(kind=kind, digest=digest) | Q(request_id__in=request_ids)
        ).delete()[0]
        return {"identifiers_unsuppressed": lifted}


# An export document is stored in parts of about this many bytes (PrivacyExportPart):
# what a worker holds of it at once, and what a download reads per query.
EXPORT_PART_BYTES = 1 << 20


def _json(value: object) -> bytes:
    return json.dumps(value, cls=DjangoJSONEncoder).encode()


class _PartWriter:
    """Bytes appended in order, stored as the export's parts of EXPORT_PART_BYTES."""

    def __init__(self, export: PrivacyExport) -> None:
        self.export = export
        self.buffer = bytearray()
        self.position = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= EXPORT_PART_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        PrivacyExportPart.objects.create(
            export=self.export, position=self.position, data=bytes(self.buffer)
        )
        self.position += 1
        self.size += len(self.buffer)
        self.buffer.clear()


class Export(RequestHandler):
    """One JSON document of everything Herald holds about the person, kept for download
    until it expires (the finishing step sets the expiry).

    Written as it is read: each export hook's section is an iterable of items, encoded
    one at a time into parts of the stored document (PrivacyExportPart), so a person
    with millions of events is exported in constant memory. The document is the one
    json.dumps would make of {"request_id", "generated_at", "customers": [person, …]},
    a person being their fields, "aliases" and each hook's section under its name."""

    type = Type.EXPORT

    def run(self, request: PrivacyRequest, now: datetime) -> dict[str, int]:
        customers = list(customers_matching(request.identifier_kind, request.identifier_value))
        counts: dict[str, int] = {"customers": len(customers)}
        export, _ = PrivacyExport.objects.update_or_create(
            request=request, defaults={"created_at": now, "expires_at": export_expiry(now)}
        )
        export.parts.all().delete()  # a run taken over from a worker that died
        out = _PartWriter(export)
        out.write(b'{"request_id": ' + _json(request.pk))
        out.write(b', "generated_at": ' + _json(now) + b', "customers": [')
        for number, customer in enumerate(customers):
            aliases = list(customer.aliases.order_by("id").values("kind", "value", "created_at"))
            counts["customer_aliases"] = counts.get("customer_aliases", 0) + len(aliases)
            person = {
                "customer_id": customer.pk,
                "external_id": customer.external_id,
                "anonymous_id": customer.anonymous_id,
                "email": customer.email,
                "attributes": customer.attributes,
                "tags": customer.tags,
                "created_at": customer.created_at,
                "updated_at": customer.updated_at,
                "aliases": aliases,
            }
            # The person's object without its closing brace: the sections follow.
            out.write((b", " if number else b"") + _json(person)[:-1])
            for name, section in customer_export_sections(customer_id=customer.pk).items():
                out.write(b", " + _json(name) + b": [")
                written = 0
                for item in section:
                    out.write((b", " if written else b"") + _json(item))
                    written += 1
                out.write(b"]")
                counts[name] = counts.get(name, 0) + written
            out.write(b"}")
        out.write(b"]}")
        out.flush()
        PrivacyExport.objects.filter(pk=export.pk).update(size=out.size)
        return counts


REQUEST_HANDLERS: dict[str, RequestHandler] = {
    handler.type: handler for handler in (Delete(), Suppress(), Unsuppress(), Export())
}
