"""Workflow actions: one handler class per action type, in `REGISTRY` (house style 6).

A handler validates its spec when a workflow is saved (`check`) and performs
the action when a run reaches it (`execute`). `execute` runs inside the
transaction that also advances the run's position (automation.workflows.runner),
so every action's database effect — a Delivery row for webhooks, a customer
update, an emitted event — commits exactly once with the run's progress: a
worker killed mid-action rolls both back and the action runs again later,
never twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from django.conf import settings

from automation.workflows.durations import parse_duration
from customers.models import Customer
from events_app.models import Event, EventType

MAX_TAGS = 100
MAX_TAG_LENGTH = 100
MAX_ACTIONS = 50


class ActionFailed(Exception):
    """The action could not be performed; the run records the message and stops."""


class ActionContext:
    """What an action may act on: the run's workflow, event and customer, and the time.

    The related rows are read on first use, by primary key: an action that
    needs only the customer does not pay for the event, and the run's locking
    query stays a single-row lookup.
    """

    def __init__(self, *, run: Any, now: datetime) -> None:
        self.run = run  # automation.models.WorkflowRun
        self.now = now

    @cached_property
    def workflow(self) -> Any:
        return self.run.workflow

    @cached_property
    def event(self) -> Event:
        return Event.objects.get(pk=self.run.event_id)

    @cached_property
    def customer(self) -> Customer:
        return Customer.objects.get(pk=self.run.customer_id)


@dataclass
class ActionResult:
    detail: dict[str, Any] = field(default_factory=dict)
    # Set by wait: the run pauses until then.
    resume_at: datetime | None = None


class Action:
    """Base of an action handler.

    `check(spec)` returns {field: [messages]} for a spec being saved (empty
    when valid; paths are relative to the action). `execute(ctx, spec)`
    performs it inside the run's transaction and raises ActionFailed with a
    reason a marketer can act on.
    """

    type: ClassVar[str]
    fields: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset()

    def check(self, spec: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(spec) - self.fields - {"type"})
        if unknown:
            errors.setdefault("", []).append(
                f"Unknown key(s) for {self.type}: {', '.join(unknown)}."
            )
        for name in sorted(self.required - set(spec)):
            errors.setdefault(name, []).append("This field is required.")
        if not errors:
            self.check_values(spec, errors)
        return errors

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        return None

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        raise NotImplementedError


def _locked_customer(ctx: ActionContext) -> Customer:
    # Row lock: concurrent runs updating the same customer apply one after the
    # other instead of overwriting each other's attributes or tags.
    customer = Customer.objects.select_for_update().get(pk=ctx.run.customer_id)
    ctx.customer = customer
    return customer


class UpdateCustomer(Action):
    """Merge `attributes` into the customer's attributes; a null value removes the key."""

    type = "update_customer"
    fields = frozenset({"attributes"})
    required = frozenset({"attributes"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        attributes = spec["attributes"]
        if not isinstance(attributes, dict) or not attributes:
            errors.setdefault("attributes", []).append("Must be a non-empty object.")

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        customer = _locked_customer(ctx)
        attributes = dict(customer.attributes) if isinstance(customer.attributes, dict) else {}
        for key, value in spec["attributes"].items():
            if value is None:
                attributes.pop(key, None)
            else:
                attributes[key] = value
        customer.attributes = attributes
        customer.save(update_fields=["attributes", "updated_at"])
        return ActionResult({"attributes": sorted(spec["attributes"])})


class _Tags(Action):
    fields = frozenset({"tags"})
    required = frozenset({"tags"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        tags = spec["tags"]
        if (
            not isinstance(tags, list)
            or not tags
            or len(tags) > MAX_TAGS
            or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG_LENGTH for t in tags)
        ):
            errors.setdefault("tags", []).append(
                f"Must be a list of 1-{MAX_TAGS} non-empty strings of at most "
                f"{MAX_TAG_LENGTH} characters."
            )

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        raise NotImplementedError

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        customer = _locked_customer(ctx)
        current = customer.tags if isinstance(customer.tags, list) else []
        updated = self.new_tags(current, spec["tags"])
        if updated != current:
            customer.tags = updated
            customer.save(update_fields=["tags", "updated_at"])
        return ActionResult({"tags": updated})


class AddTags(_Tags):
    type = "add_tags"

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        return [*current, *(t for t in dict.fromkeys(tags) if t not in current)]


class RemoveTags(_Tags):
    type = "remove_tags"

    def new_tags(self, current: list[str], tags: list[str]) -> list[str]:
        return [t for t in current if t not in set(tags)]


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

        depth = ctx.event.depth + 1
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


class Wait(Action):
    """Pause the run; the dispatcher resumes it at `now + duration` (durable: a DB row)."""

    type = "wait"
    fields = frozenset({"duration"})
    required = frozenset({"duration"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        try:
            duration = parse_duration(spec["duration"])
        except ValueError as exc:
            errors.setdefault("duration", []).append(f"Duration {exc}.")
            return
        if duration > timedelta(days=365):
            errors.setdefault("duration", []).append("Must be at most one year (P365D).")

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        resume_at = ctx.now + parse_duration(spec["duration"])
        return ActionResult({"resume_at": resume_at.isoformat()}, resume_at=resume_at)


class Webhook(Action):
    """POST a signed JSON payload (event, customer, workflow) through the delivery engine.

    The URL gets an Endpoint of kind "workflow" when the workflow is saved
    (its id is kept in the stored action as `endpoint_id`), so the message
    is signed, retried, logged and SSRF-guarded like every other delivery.
    """

    type = "webhook"
    fields = frozenset({"url", "endpoint_id"})
    required = frozenset({"url"})

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        from automation.workflows.webhooks import url_error

        problem = url_error(spec["url"])
        if problem:
            errors.setdefault("url", []).append(problem)

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        from automation.workflows.webhooks import webhook_send

        delivery_id = webhook_send(ctx=ctx, spec=spec)
        return ActionResult({"delivery_id": delivery_id})


REGISTRY: dict[str, Action] = {
    handler.type: handler
    for handler in (UpdateCustomer(), AddTags(), RemoveTags(), EmitEvent(), Wait(), Webhook())
}


def validate_actions(actions: Any, *, root: str = "actions") -> dict[str, list[str]]:
    """{path: [messages]} for a list of action specs (empty when valid)."""
    if not isinstance(actions, list):
        return {root: ["Must be a list of actions."]}
    if len(actions) > MAX_ACTIONS:
        return {root: [f"At most {MAX_ACTIONS} actions."]}
    errors: dict[str, list[str]] = {}
    for index, spec in enumerate(actions):
        path = f"{root}[{index}]"
        if not isinstance(spec, dict):
            errors[path] = ["Must be an object with a 'type'."]
            continue
        kind = spec.get("type")
        handler = REGISTRY.get(kind) if isinstance(kind, str) else None
        if handler is None:
            errors[f"{path}.type"] = [
                f"Unknown action type {spec.get('type')!r}; one of: {', '.join(REGISTRY)}."
            ]
            continue
        for name, messages in handler.check(spec).items():
            errors.setdefault(f"{path}.{name}" if name else path, []).extend(messages)
    return errors
