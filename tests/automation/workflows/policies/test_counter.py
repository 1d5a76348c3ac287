"""The one-statement check-and-take (policies.ledger): exact under a 50-thread race
across cap edits, windows that run out, a ledger from before counters, merges and
their undo, and quiet hours that undo what the statement took."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation.webhooks.models import Delivery
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.models import DeliveryPolicy, PolicyCounter, PolicyUsage
from automation.workflows.policies.services import delivery_policy_create, delivery_policy_update
from automation.workflows.runner import workflow_run_advance
from automation.workflows.services import WorkflowInput, workflow_create
from customers.identity.services import customer_merge, merge_undo
from customers.models import Customer
from events_app.models import EventType
from project import sql
from tests.automation.workflows.policies.conftest import QUIET
from tests.automation.workflows.policies.test_cap_race import RACERS, advance_concurrently
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # 12:00 in Prague
ADD_TAG = {"type": "add_tags", "tags": ["reached"]}


def outcomes_of(workflow: Workflow) -> Counter[str]:
    return Counter(
        run.outcomes[-1]["status"] for run in WorkflowRun.objects.filter(workflow=workflow)
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.xdist_group("races")  # one 50-connection race at a time
def test_fifty_racers_per_round_take_exactly_what_each_edited_cap_leaves(
    receiver: Receiver,
) -> None:
    # Given a cap of 3 webhooks a week and one customer
    policy = delivery_policy_create(
        data={"key": "default", "caps": [{"count": 3, "window": "P7D", "actions": ["webhook"]}]}
    )
    workflow = workflow_create(
        data=WorkflowInput(
            name="racy",
            trigger_event_types=["purchase"],
            actions=[{"type": "webhook", "url": receiver.url()}],
            delivery_policy=policy.key,
        )
    )
    workflow.refresh_from_db()
    alice = Customer.objects.create(external_id="alice")

    def race() -> Counter[str]:
        WorkflowRun.objects.all().delete()
        now = timezone.now()
        runs = WorkflowRun.objects.bulk_create(
            WorkflowRun(
                workflow=workflow,
                customer=alice,
                actions=workflow.actions,
                created_at=now,
                resume_at=now,
            )
            for _ in range(RACERS)
        )
        advance_concurrently([run.pk for run in runs])
        return outcomes_of(workflow)

    # When 50 runs race, then the cap is raised to 5 and 50 race again, then lowered to 4
    first = race()
    delivery_policy_update(
        policy=policy, data={"caps": [{"count": 5, "window": "P7D", "actions": ["webhook"]}]}
    )
    second = race()
    delivery_policy_update(
        policy=policy, data={"caps": [{"count": 4, "window": "P7D", "actions": ["webhook"]}]}
    )
    third = race()

    # Then each round takes exactly what the cap leaves: 3, then 2, then none
    assert first == {"succeeded": 3, "capped": RACERS - 3}
    assert second == {"succeeded": 2, "capped": RACERS - 2}
    assert third == {"capped": RACERS}
    assert Delivery.objects.count() == 5
    assert PolicyUsage.objects.filter(customer=alice).count() == 5
    reasons = {run.outcomes[0]["reason"] for run in WorkflowRun.objects.filter(workflow=workflow)}
    assert reasons == {"capped: 4 of 4 webhook actions in the last 7 days"}
    counter = PolicyCounter.objects.get(policy=policy, customer=alice)
    assert len(counter.entries) == 4  # the newest 4 of 5: what a cap of 4 needs


@pytest.fixture(autouse=True)
def _purchase(db: None) -> None:
    EventType.objects.get_or_create(key="purchase", defaults={"name": "Purchase"})


def advance(run: WorkflowRun, now: datetime) -> str:
    workflow_run_advance(run_id=run.pk, now=lambda: now)
    run.refresh_from_db()
    return str(run.outcomes[0]["status"])


def test_an_action_goes_through_again_once_the_oldest_leaves_the_window(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=[{"count": 2, "window": "PT1H", "actions": ["webhook"]}])
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")

    def at(minutes: int) -> str:
        moment = NOON + timedelta(minutes=minutes)
        return advance(start_run(workflow, alice, moment), moment)

    assert [at(0), at(10), at(20)] == ["succeeded", "succeeded", "capped"]
    assert at(59) == "capped"
    # The window is (now - 1 h, now]: at 13:00 the action of 12:00 has left it.
    assert [at(60), at(61)] == ["succeeded", "capped"]
    assert [at(70), at(71)] == ["succeeded", "capped"]
    assert PolicyUsage.objects.count() == 4
    # Entries out of their window are dropped as the counter goes, but for a clock
    # skew's worth (12:10, kept at 13:10 beside 13:00 and 13:10).
    assert len(PolicyCounter.objects.get().entries) == 3
    later = NOON + timedelta(days=1)
    assert advance(start_run(workflow, alice, later), later) == "succeeded"
    assert len(PolicyCounter.objects.get().entries) == 1


def test_a_policed_action_takes_one_statement_and_the_ledger_row_with_it(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cap = [{"count": 3, "window": "P7D", "actions": ["add_tags"]}]
    policed = policed_workflow(make_policy(caps=cap, quiet_hours=QUIET), [ADD_TAG])
    free = workflow_create(
        data=WorkflowInput(name="free", trigger_event_types=["purchase"], actions=[ADD_TAG])
    )
    alice = Customer.objects.create(external_id="alice")
    # The first action of each creates the counter; the second is the steady state.
    advance(start_run(policed, alice, NOON), NOON)
    advance(start_run(free, alice, NOON), NOON)
    # The check runs prepared, on a cursor Django does not log: count those too.
    prepared: list[str] = []
    execute = sql._execute

    def counted(statement: str, *args: Any) -> Any:
        prepared.append(statement)
        return execute(statement, *args)

    monkeypatch.setattr(sql, "_execute", counted)

    def statements(workflow: Workflow) -> int:
        run = start_run(workflow, alice, NOON)
        prepared.clear()
        with CaptureQueriesContext(connection) as captured:
            workflow_run_advance(run_id=run.pk, now=lambda: NOON)
        return len(captured) + len(prepared)

    assert statements(policed) == statements(free) + 1
    assert PolicyUsage.objects.count() == 2


def test_a_ledger_from_before_counters_is_counted_at_the_first_check(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    # Given two actions in the ledger and the stale counter the data migration leaves
    policy = make_policy(caps=[{"count": 3, "window": "P7D", "actions": ["webhook"]}])
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    for days in (1, 2):
        PolicyUsage.objects.create(
            policy=policy, customer=alice, action_type="webhook", at=NOON - timedelta(days=days)
        )
    PolicyCounter.objects.create(policy=policy, customer=alice, caps_key="")
    # Then one more goes through, and the next is capped with the ledger's count
    assert advance(start_run(workflow, alice, NOON), NOON) == "succeeded"
    run = start_run(workflow, alice, NOON)
    assert advance(run, NOON) == "capped"
    assert run.outcomes[0]["reason"] == "capped: 3 of 3 webhook actions in the last 7 days"


def test_a_merge_counts_both_customers_actions_and_its_undo_separates_them(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=[{"count": 2, "window": "P7D", "actions": ["webhook"]}])
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    anonymous = Customer.objects.create(anonymous_id="device-1")
    assert advance(start_run(workflow, alice, NOON), NOON) == "succeeded"
    assert advance(start_run(workflow, anonymous, NOON), NOON) == "succeeded"

    merge = customer_merge(primary_id=alice.pk, secondary_id=anonymous.pk)

    assert advance(start_run(workflow, alice, NOON), NOON) == "capped"
    assert PolicyCounter.objects.filter(customer=alice).count() == 1
    assert not isinstance(merge, dict)
    merge_undo(merge_id=merge.pk)
    assert advance(start_run(workflow, alice, NOON), NOON) == "succeeded"
    assert advance(start_run(workflow, anonymous, NOON), NOON) == "succeeded"
    assert advance(start_run(workflow, anonymous, NOON), NOON) == "capped"


def test_an_action_in_quiet_hours_takes_nothing_from_the_cap(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(
        caps=[{"count": 1, "window": "P7D", "actions": ["webhook"]}], quiet_hours=QUIET
    )
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice", attributes={"timezone": "Asia/Tokyo"})
    night_in_tokyo = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo
    assert advance(start_run(workflow, alice, night_in_tokyo), night_in_tokyo) == "skipped"
    assert PolicyUsage.objects.count() == 0
    assert not PolicyCounter.objects.exists()
    morning = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert advance(start_run(workflow, alice, morning), morning) == "succeeded"
    assert advance(start_run(workflow, alice, morning), morning) == "capped"


def test_deleting_a_customer_or_a_policy_deletes_its_counters(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    from automation.workflows.policies.services import delivery_policy_delete
    from customers.services import customer_delete

    policy = make_policy(caps=[{"count": 2, "window": "P7D", "actions": ["webhook"]}])
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    bob = Customer.objects.create(external_id="bob")
    advance(start_run(workflow, alice, NOON), NOON)
    advance(start_run(workflow, bob, NOON), NOON)
    customer_delete(customer=alice)
    assert list(PolicyCounter.objects.values_list("customer_id", flat=True)) == [bob.pk]
    workflow.delete()
    delivery_policy_delete(policy=policy)
    assert PolicyCounter.objects.count() == 0
