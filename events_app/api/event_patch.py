"""PATCH /events/{event_id}: the writable fields, one handler class per field.

The body names the fields to change, e.g. `{"status": "completed"}`. Each field
is a handler in `EVENT_PATCH_HANDLERS`, keyed by its name: it declares the type
of its value (msgspec validates it) and calls the one service that makes the
change. Adding a writable field (the webhooks feature adds `is_delivered`) is
adding a class here, registering it, and a test; a field without a handler is a
400, so nothing becomes writable by accident.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from django.db import transaction

from events_app import event_status
from project.api.body import validation_details
from project.api.errors import ApiError
from project.errors import ValidationFailed


class EventPatchHandler:
    """One writable field of an event: its value type and the service that applies it."""

    field: ClassVar[str]
    value_type: ClassVar[Any]

    def apply(self, *, event_id: str, value: Any) -> None:
        """Make the change with one service call; raise HeraldError subclasses on refusal."""
        raise NotImplementedError


class StatusPatch(EventPatchHandler):
    """`status`: pending → completed or failed, once (seed 000)."""

    field = "status"
    value_type = Literal["completed", "failed"]

    def apply(self, *, event_id: str, value: str) -> None:
        event_status.event_mark_processed(event_id=event_id, status=value)


class IsDeliveredPatch(EventPatchHandler):
    """`is_delivered`: true marks the event delivered and cancels its retries (seed 001)."""

    field = "is_delivered"
    value_type = bool

    def apply(self, *, event_id: str, value: bool) -> None:
        if value is not True:
            raise ValidationFailed(
                "is_delivered can only be set to true; use POST /deliveries/{id}/redeliver "
                "to send a delivery again.",
                details={"is_delivered": ["Only true is accepted."]},
            )
        event_status.event_mark_delivered(event_id=event_id)


EVENT_PATCH_HANDLERS: dict[str, EventPatchHandler] = {
    handler.field: handler for handler in (StatusPatch(), IsDeliveredPatch())
}


def event_patch_schema() -> type:
    """A msgspec Struct of the registered fields, for the API docs."""
    return msgspec.defstruct(
        "EventPatchIn",
        [
            (name, handler.value_type | msgspec.UnsetType, msgspec.UNSET)
            for name, handler in EVENT_PATCH_HANDLERS.items()
        ],
        forbid_unknown_fields=True,
    )


def decode_event_patch(raw_fields: dict[str, msgspec.Raw]) -> dict[str, Any]:
    """Validate a PATCH body's fields against the registry; any problem is a 400."""
    writable = ", ".join(sorted(EVENT_PATCH_HANDLERS))
    if not raw_fields:
        raise ApiError(f"Give at least one field to update ({writable}).")
    unknown = sorted(set(raw_fields) - EVENT_PATCH_HANDLERS.keys())
    if unknown:
        raise ApiError(
            f"Field(s) {', '.join(unknown)} cannot be updated; writable: {writable}.",
            details={name: ["This field cannot be updated."] for name in unknown},
        )
    values: dict[str, Any] = {}
    for name, raw in raw_fields.items():
        try:
            values[name] = msgspec.json.decode(
                raw, type=EVENT_PATCH_HANDLERS[name].value_type, strict=True
            )
        except msgspec.ValidationError as exc:
            message, _ = validation_details(exc)
            raise ApiError(f"Invalid input: {name}: {message}", details={name: [message]}) from None
    return values


def event_patch_apply(*, event_id: str, values: dict[str, Any]) -> None:
    """Apply every field or none (one transaction)."""
    with transaction.atomic():
        for name, value in values.items():
            EVENT_PATCH_HANDLERS[name].apply(event_id=event_id, value=value)
