"""The emit_event action: a follow-up event for the same customer, with a loop guard."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from automation.workflows.actions.base import Action, ActionContext, ActionFailed, ActionResult
from events_app.models import EventType


class EmitEvent(Action):
    """Ingest a follow-up event for the same customer, through events_app.ingestion.

    The new event's depth is the triggering event's plus one; at
    HERALD_AUTOMATION_MAX_DEPTH the chain stops (the action fails with the
    reason), so workflows that trigger each other cannot loop forever.
    """

    type = "emit_event"
    fields = frozenset({"event_type", "data", "property_records"})
    required = frozenset({"event_type"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        ref = spec["event_type"]
        if not isinstance(ref, str) or (
            not EventType.objects.filter(key=ref).exists()
            and not (EventType.objects.filter(pk=ref).exists())
        ):
            errors.setdefault("event_type", []).append(f"Unknown event type {ref!r}.")
        if "data" in spec and not isinstance(spec["data"], dict):
            errors.setdefault("data", []).append("Must be an object.")
        records = spec.get("property_records", [])
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and set(r) == {"property_id", "property_value"} for r in records
        ):
            errors.setdefault("property_records", []).append(
                'Must be a list of {"property_id": …, "property_value": …}.'
            )

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        import msgspec

        from events_app.ingestion import events_prepare, events_store
        from events_app.schemas import EventCreateIn

        # A run no event started (a segment trigger, a broadcast) begins a chain.
        depth = (ctx.event.depth if ctx.event is not None else 0) + 1
        limit = settings.HERALD_AUTOMATION_MAX_DEPTH
        if depth > limit:
            raise ActionFailed(
                f"Loop guard: the event chain reached the depth limit ({limit}); "
                "no follow-up event was emitted."
            )
        ref = spec["event_type"]
        by_id = EventType.objects.filter(pk=ref).exists()
        body = {
            "event": {
                ("event_type_id" if by_id else "event_type"): ref,
                "customer_id": ctx.run.customer_id,
                "data": spec.get("data", {}),
            },
            "property_records": spec.get("property_records", []),
        }
        try:
            item = msgspec.convert(body, EventCreateIn, strict=True)
        except msgspec.ValidationError as exc:
            raise ActionFailed(f"Invalid follow-up event: {exc}") from None
        prepared, invalid = events_prepare(items=[item], received_at=ctx.now)
        if invalid:
            raise ActionFailed(f"Invalid follow-up event: {invalid[0].error}")
        # The insert writes the depth with the row; the event is evaluated only after
        # this transaction commits, and by then it carries it.
        prepared[0].depth = depth
        stored = events_store(prepared=prepared).stored
        if not stored:
            raise ActionFailed("The follow-up event was not stored.")
        event_id = stored[0].id
        return ActionResult({"event_id": event_id, "depth": depth})
