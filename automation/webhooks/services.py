"""Endpoints: where Herald POSTs, and their signing secrets.

Create, change, disable (with a reason), delete (with their delivery log), rotate
the secret and ping. Every kind (webhook subscriptions, schedules, workflow
actions) has one; each message is signed per Standard Webhooks with the
endpoint's secrets (automation.webhooks.signing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from automation.webhooks import guard
from automation.webhooks.deliveries import (
    OUTSTANDING,
    PENDING,
    delivery_create,
    events_refresh_delivered,
)
from automation.webhooks.models import RESERVED_EVENT_TYPES, Delivery, Endpoint
from automation.webhooks.signing import new_secret
from events_app.models import EventType
from project.audit.services import audit_record, audit_snapshot
from project.cascade import cascade_delete_object, cascade_lock
from project.errors import ValidationFailed

logger = logging.getLogger(__name__)

SECRET_ROTATION_OVERLAP = timedelta(hours=24)
AUDIT_TYPE = "webhook"


def _audit(
    endpoint: Endpoint, action: str, before: dict[str, Any] | None, *, gone: bool = False
) -> None:
    """Audit a webhook subscription's change. The endpoints of schedules and workflows are
    audited as part of their owner's change, not as webhooks of their own."""
    if endpoint.kind == Endpoint.Kind.SUBSCRIPTION:
        after = None if gone else audit_snapshot(endpoint)
        audit_record(
            action=action, obj_type=AUDIT_TYPE, obj_id=endpoint.pk, before=before, after=after
        )


def _state(endpoint: Endpoint) -> dict[str, Any] | None:
    return audit_snapshot(endpoint) if endpoint.kind == Endpoint.Kind.SUBSCRIPTION else None


def endpoint_check_url(url: str, *, field: str = "url") -> None:
    """Refuse an endpoint URL at save time (the guard checks again at every call)."""
    try:
        guard.check_url(url)
    except guard.OutboundRefused as exc:
        raise ValidationFailed(f"URL not allowed: {exc}", details={field: [str(exc)]}) from None
    except guard.OutboundFailed as exc:
        raise ValidationFailed(f"URL cannot be used: {exc}", details={field: [str(exc)]}) from None


def _reserved_keys(keys: Iterable[str]) -> list[str]:
    """The reserved keys (RESERVED_EVENT_TYPES) among an endpoint's event_types, sorted."""
    return sorted({k for k in keys if k in RESERVED_EVENT_TYPES})


def _event_types_by_key(keys: Iterable[str]) -> list[EventType]:
    wanted = [k for k in dict.fromkeys(keys) if k not in RESERVED_EVENT_TYPES]
    found = {t.key: t for t in EventType.objects.filter(key__in=wanted)}
    unknown = [k for k in wanted if k not in found]
    if unknown:
        raise ValidationFailed(
            f"Unknown event type(s): {', '.join(unknown)}.",
            details={"event_types": [f"Unknown event type '{k}'." for k in unknown]},
        )
    return [found[k] for k in wanted]


def endpoint_create(
    *,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    active: bool = True,
    kind: str = Endpoint.Kind.SUBSCRIPTION,
) -> tuple[Endpoint, str]:
    """Create an endpoint; return it with its signing secret (shown once)."""
    endpoint_check_url(url)
    types = _event_types_by_key(event_types or [])
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            kind=kind,
            url=url,
            description=description,
            active=active,
            secret=new_secret(),
            reserved_event_types=_reserved_keys(event_types or []),
        )
        endpoint.event_types.set(types)
        _audit(endpoint, "created", None)
    return endpoint, endpoint.secret


def endpoint_update(*, endpoint: Endpoint, fields: dict[str, Any]) -> Endpoint:
    """Update url, description, event_types (keys) or active; re-activation clears health."""
    with transaction.atomic():
        before = _state(endpoint)
        if "url" in fields:
            endpoint_check_url(fields["url"])
            endpoint.url = fields["url"]
        if "description" in fields:
            endpoint.description = fields["description"]
        if "event_types" in fields:
            endpoint.event_types.set(_event_types_by_key(fields["event_types"] or []))
            endpoint.reserved_event_types = _reserved_keys(fields["event_types"] or [])
        if "active" in fields and fields["active"] != endpoint.active:
            endpoint.active = fields["active"]
            if endpoint.active:
                endpoint.disabled_reason = ""
                endpoint.disabled_at = None
                endpoint.first_failure_at = None
            else:
                endpoint.disabled_reason = "Disabled by a user."
                endpoint.disabled_at = timezone.now()
        endpoint.save()
        _audit(endpoint, "updated", before)
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> dict[str, int]:
    """Delete an endpoint and its delivery log; returns rows deleted per model.

    Set-based (project.cascade): an endpoint can have millions of deliveries and
    attempts, and Django's Collector would load every one (and every schedule run
    pointing at one) first; here each table is one statement, whatever the rows.
    Only events with an outstanding delivery here can change their is_delivered:
    they are recomputed first, as if this endpoint's deliveries were gone, by one
    UPDATE whose subquery finds them (after the delete nothing would).

    Lock order, shared with the sender and `endpoint_disable`: the endpoint, its
    deliveries, then their events. The sender records an attempt by updating its
    delivery and then its event; taking the events first (the is_delivered UPDATE)
    and the deliveries after (the delete) deadlocked with it. An attempt in flight
    meanwhile finds its delivery gone when it records, and records nothing.
    """
    with transaction.atomic():
        cascade_lock(Endpoint.objects.filter(pk=endpoint.pk))
        _audit(endpoint, "deleted", _state(endpoint), gone=True)
        events_refresh_delivered(
            Delivery.objects.filter(
                endpoint=endpoint, event__isnull=False, status__in=OUTSTANDING
            ).values("event_id"),
            except_endpoint=endpoint,
        )
        return cascade_delete_object(endpoint)


def endpoint_rotate_secret(*, endpoint: Endpoint) -> str:
    """Issue a new secret; the old one keeps signing for SECRET_ROTATION_OVERLAP."""
    now = timezone.now()
    before = _state(endpoint)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + SECRET_ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    _audit(endpoint, "secret_rotated", before)
    return endpoint.secret


def endpoint_reveal_secret(*, endpoint: Endpoint) -> str:
    """The endpoint's signing secret, shown on purpose: recorded in the audit trail
    (which names the endpoint, never the secret), whatever the endpoint's kind."""
    audit_record(
        action="secret_shown",
        obj_type=AUDIT_TYPE,
        obj_id=endpoint.pk,
        after={"kind": endpoint.kind},
    )
    return endpoint.secret


def endpoint_disable(*, endpoint: Endpoint, reason: str) -> None:
    """Stop sending to an endpoint: mark it inactive with a reason, fail its pending work."""
    now = timezone.now()
    with transaction.atomic():
        before = _state(endpoint)
        Endpoint.objects.filter(pk=endpoint.pk).update(
            active=False, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        endpoint.active, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
        pending = Delivery.objects.filter(endpoint=endpoint, status=PENDING)
        event_ids = list(pending.filter(event__isnull=False).values_list("event_id", flat=True))
        pending.update(
            status=Delivery.Status.FAILED,
            next_attempt_at=None,
            completed_at=now,
            last_error=f"Endpoint disabled: {reason}",
        )
        events_refresh_delivered(event_ids)
        endpoint.updated_at = now
        _audit(endpoint, "disabled", before)
    logger.warning("Endpoint %s disabled: %s", endpoint.pk, reason)


def endpoint_ping(*, endpoint: Endpoint) -> Delivery:
    """Send a signed test message (`webhook.test`) through the normal delivery path."""
    payload = {
        "type": "webhook.test",
        "webhook_id": endpoint.pk,
        "sent_at": timezone.now().isoformat(),
    }
    with transaction.atomic():
        return delivery_create(endpoint=endpoint, payload=payload)
