"""What every action handler shares: its context, its result, its base class, its failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from customers.models import Customer
from events_app.models import Event

if TYPE_CHECKING:
    from automation.workflows.models import Workflow, WorkflowRun


class ActionFailed(Exception):
    """The action could not be performed; the run records the message and stops."""


class ActionContext:
    """What an action may act on: the run's workflow, event (if an event started it) and
    customer, and the time.

    The related rows are read on first use, by primary key: an action that
    needs only the customer does not pay for the event, and the run's locking
    query stays a single-row lookup.
    """

    def __init__(self, *, run: WorkflowRun, now: datetime) -> None:
        self.run = run
        self.now = now

    @cached_property
    def workflow(self) -> Workflow:
        return self.run.workflow

    @cached_property
    def event(self) -> Event | None:
        """The event that started the run; None for a segment trigger or a broadcast."""
        if self.run.event_id is None:
            return None
        return Event.objects.get(pk=self.run.event_id)

    @cached_property
    def customer(self) -> Customer:
        return Customer.objects.get(pk=self.run.customer_id)


@dataclass
class ActionResult:
    """What an action did (`detail`, kept in the run's outcomes), and whether the run pauses."""

    detail: dict[str, Any] = field(default_factory=dict)
    # Set by wait: the run pauses until then.
    resume_at: datetime | None = None


# Keys any action may carry. `exempt_from_policy`: the workflow's delivery policy
# (caps, quiet hours) does not apply to it -- transactional messages.
COMMON_FIELDS = frozenset({"type", "exempt_from_policy"})


class Action:
    """Base of an action handler: one subclass per action type, registered by `type`.

    A handler validates its spec when a workflow is saved and performs the
    action when a run reaches it:

    * `check(spec)` returns {field: [messages]} for a spec being saved (empty
      when valid; paths are relative to the action). It refuses keys outside
      `fields` (and the keys every action may carry, `COMMON_FIELDS`) and requires
      `required`; subclasses check the values in `check_values`.
    * `execute(ctx, spec)` performs it. It runs inside the transaction that
      also advances the run's position (automation.workflows.runner), so its
      database effect — a Delivery row, a customer update, an emitted event —
      commits exactly once with the run's progress: a worker killed mid-action
      rolls both back and the action runs again later, never twice. It raises
      ActionFailed with a reason a marketer can act on.
    """

    type: ClassVar[str]
    fields: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset()

    def check(self, spec: dict[str, Any]) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        unknown = sorted(set(spec) - self.fields - COMMON_FIELDS)
        if unknown:
            errors.setdefault("", []).append(
                f"Unknown key(s) for {self.type}: {', '.join(unknown)}."
            )
        if not isinstance(spec.get("exempt_from_policy", False), bool):
            errors.setdefault("exempt_from_policy", []).append("Must be true or false.")
        for name in sorted(self.required - set(spec)):
            errors.setdefault(name, []).append("This field is required.")
        if not errors:
            self.check_values(spec, errors)
        return errors

    def check_values(self, spec: dict[str, Any], errors: dict[str, list[str]]) -> None:
        return None

    def execute(self, ctx: ActionContext, spec: dict[str, Any]) -> ActionResult:
        raise NotImplementedError
