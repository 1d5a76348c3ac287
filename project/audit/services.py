"""Writing the audit trail: one call per change, from the service that makes it.

Services call `audit_record` inside their own transaction, so an entry exists
exactly when its change was committed. Secrets never reach the table: every key
whose name is in REDACTED_FIELDS is dropped from `before` and `after`, at any
depth, before the row is written.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from rest_framework.utils.encoders import JSONEncoder

from project.audit.context import actor_current
from project.audit.models import AuditEntry

# Field names whose values are secrets or stand-ins for them (a hash can be
# brute-forced offline if the secret is weak; a prefix narrows the search).
REDACTED_FIELDS = frozenset(
    {
        "secret",
        "secrets",
        "previous_secret",
        "secret_hash",
        "secret_prefix",
        "webhook_secrets",
        "signing_secret",
        "password",
        "token",
        "api_key",
        "authorization",
    }
)


def redact(value: Any) -> Any:
    """`value` without any key named in REDACTED_FIELDS (dicts and lists, at any depth)."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if str(k).lower() not in REDACTED_FIELDS}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    # Datetimes, decimals and UUIDs as the API renders them.
    return json.loads(json.dumps(value, cls=JSONEncoder))


def audit_snapshot(
    obj: models.Model, *, exclude: tuple[str, ...] = (), extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored state of `obj` as JSON: its columns by name and its many-to-many
    relations as sorted lists of primary keys; `extra` adds derived values."""
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.name in exclude:
            continue
        data[field.name if not field.is_relation else field.attname] = field.value_from_object(obj)
    if obj.pk is not None:
        for m2m in obj._meta.many_to_many:
            if m2m.name not in exclude:
                data[m2m.name] = sorted(
                    str(pk) for pk in getattr(obj, m2m.name).values_list("pk", flat=True)
                )
    if extra:
        data.update(extra)
    return redact(_jsonable(data))


def audit_record(
    *,
    action: str,
    obj_type: str,
    obj_id: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record one change made by the current actor (project.audit.context).

    `action`: an AuditEntry.Action; `obj_type`: the object's kind as the API names
    it ("webhook", "workflow", ...); `before` / `after`: its state (None where it
    did not exist, or for an action that changes nothing, such as showing a secret).
    Secret-like fields are removed here whatever the caller passed.
    """
    actor = actor_current()
    return AuditEntry.objects.create(
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        object_type=obj_type,
        object_id=str(obj_id),
        before=None if before is None else redact(_jsonable(before)),
        after=None if after is None else redact(_jsonable(after)),
        request_id=actor.request_id,
    )


def audit_forget(*, obj_type: str, obj_id: Any) -> int:
    """Blank the recorded states of one object's entries (a person's erasure): who did
    what, and when, stays; what the object held does not. Returns the entries blanked.
    One UPDATE through audit_object_idx."""
    return AuditEntry.objects.filter(object_type=obj_type, object_id=str(obj_id)).update(
        before=None, after=None
    )
