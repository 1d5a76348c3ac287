"""Policies where actions run: caps pass over actions, quiet hours skip or defer them
durably (across DST nights), exempt actions pass, and failed actions are not counted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from automation.webhooks.models import Delivery
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.policies.models import DeliveryPolicy, PolicyUsage
from automation.workflows.runner import workflow_run_advance, workflow_runs_due
from customers.models import Customer
from events_app.models import EventType
from tests.automation.workflows.policies.conftest import HOOK, QUIET

pytestmark = pytest.mark.django_db

WEEKLY_3 = [{"count": 3, "window": "P7D", "actions": ["webhook"]}]
NOON = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # 12:00 in Prague


@pytest.fixture(autouse=True)
def _purchase(db: None) -> None:
    EventType.objects.create(key="purchase", name="Purchase")


def advance(run: WorkflowRun, now: datetime) -> WorkflowRun:
    workflow_run_advance(run_id=run.pk, now=lambda: now)
    run.refresh_from_db()
    return run


def statuses(run: WorkflowRun) -> list[tuple[int, str]]:
    return [(o["index"], o["status"]) for o in run.outcomes]


def test_the_fourth_webhook_in_a_week_is_capped_and_the_run_goes_on(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=WEEKLY_3)
    workflow = policed_workflow(
        policy, [{"type": "webhook", "url": HOOK}, {"type": "add_tags", "tags": ["reached"]}]
    )
    alice = Customer.objects.create(external_id="alice")
    runs = [advance(start_run(workflow, alice, NOON), NOON + timedelta(days=i)) for i in range(4)]
    assert [statuses(r) for r in runs[:3]] == [[(0, "succeeded"), (1, "succeeded")]] * 3
    last = runs[3]
    assert statuses(last) == [(0, "capped"), (1, "succeeded")]
    assert last.outcomes[0]["reason"] == "capped: 3 of 3 webhook actions in the last 7 days"
    assert last.status == WorkflowRun.Status.SUCCEEDED
    assert Delivery.objects.count() == 3
    assert PolicyUsage.objects.count() == 3
    # A week after the first, it has left the window: the next one goes out.
    later = advance(start_run(workflow, alice), NOON + timedelta(days=7, seconds=1))
    assert statuses(later)[0] == (0, "succeeded")


def test_caps_count_across_workflows_and_only_for_the_same_customer(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=[{"count": 1, "window": "P1D", "actions": ["webhook"]}])
    first, second = policed_workflow(policy), policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    bob = Customer.objects.create(external_id="bob")
    assert statuses(advance(start_run(first, alice), NOON)) == [(0, "succeeded")]
    assert statuses(advance(start_run(second, alice), NOON)) == [(0, "capped")]
    assert statuses(advance(start_run(second, bob), NOON)) == [(0, "succeeded")]


def test_an_exempt_action_is_neither_blocked_nor_counted(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(
        caps=[{"count": 1, "window": "P1D", "actions": ["webhook"]}],
        quiet_hours=QUIET,
        on_blocked="skip",
    )
    receipt = {"type": "webhook", "url": HOOK, "exempt_from_policy": True}
    workflow = policed_workflow(policy, [receipt, receipt, {"type": "webhook", "url": HOOK}])
    alice = Customer.objects.create(external_id="alice")
    run = advance(start_run(workflow, alice), NOON)
    assert statuses(run) == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded")]
    assert PolicyUsage.objects.count() == 1
    night = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)
    run = advance(start_run(workflow, alice), night)
    assert statuses(run) == [(0, "succeeded"), (1, "succeeded"), (2, "skipped")]


def test_a_failed_action_is_not_counted(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=[{"count": 1, "window": "P1D", "actions": ["webhook"]}])
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    broken = start_run(workflow, alice)
    broken.actions = [{"type": "webhook", "url": HOOK, "endpoint_id": "gone"}]
    broken.save()
    assert statuses(advance(broken, NOON)) == [(0, "failed")]
    assert PolicyUsage.objects.count() == 0
    assert statuses(advance(start_run(workflow, alice), NOON)) == [(0, "succeeded")]


def test_quiet_hours_skip_records_the_reason_and_takes_nothing_from_the_cap(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    policy = make_policy(caps=WEEKLY_3, quiet_hours=QUIET, on_blocked="skip")
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    run = advance(start_run(workflow, alice), datetime(2026, 12, 7, 22, 0, tzinfo=UTC))
    assert statuses(run) == [(0, "skipped")]
    assert run.outcomes[0]["reason"] == (
        "skipped: quiet hours until 2026-12-08T08:00:00+01:00 (Europe/Prague)"
    )
    assert run.status == WorkflowRun.Status.SUCCEEDED
    assert PolicyUsage.objects.count() == 0
    assert Delivery.objects.count() == 0


def test_the_customers_time_zone_attribute_decides_quiet_hours(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
) -> None:
    workflow = policed_workflow(make_policy(quiet_hours=QUIET, on_blocked="skip"))
    ny = Customer.objects.create(external_id="ny", attributes={"timezone": "America/New_York"})
    prague = Customer.objects.create(external_id="cz", attributes={"timezone": "Europe/Prague"})
    odd = Customer.objects.create(external_id="odd", attributes={"timezone": 42})
    night_in_prague = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)  # 17:00 in New York
    assert statuses(advance(start_run(workflow, ny), night_in_prague)) == [(0, "succeeded")]
    assert statuses(advance(start_run(workflow, prague), night_in_prague)) == [(0, "skipped")]
    run = advance(start_run(workflow, odd), night_in_prague)
    assert "is not an IANA time zone" in run.outcomes[0]["reason"]


@pytest.mark.parametrize(
    ("evening", "morning_utc", "shown"),
    [
        # Spring forward (2026-03-29, 02:00 CET -> 03:00 CEST): 08:00 is 06:00 UTC.
        (
            datetime(2026, 3, 28, 21, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 6, 0, tzinfo=UTC),
            "2026-03-29T08:00:00+02:00",
        ),
        # Fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 08:00 is 07:00 UTC.
        (
            datetime(2026, 10, 24, 20, 30, tzinfo=UTC),
            datetime(2026, 10, 25, 7, 0, tzinfo=UTC),
            "2026-10-25T08:00:00+01:00",
        ),
    ],
)
def test_a_deferred_action_waits_durably_until_the_morning_across_dst(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
    evening: datetime,
    morning_utc: datetime,
    shown: str,
) -> None:
    policy = make_policy(caps=WEEKLY_3, quiet_hours=QUIET, on_blocked="defer")
    workflow = policed_workflow(policy)
    alice = Customer.objects.create(external_id="alice")
    with time_machine.travel(evening, tick=False):
        run = start_run(workflow, alice)
        workflow_run_advance(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.WAITING
    assert run.position == 0
    assert run.resume_at == morning_utc
    assert run.outcomes[0]["status"] == "deferred"
    assert run.outcomes[0]["reason"] == f"deferred to {shown} (quiet hours, Europe/Prague)"
    assert Delivery.objects.count() == 0
    with time_machine.travel(morning_utc - timedelta(seconds=1), tick=False):
        assert workflow_runs_due(now=morning_utc - timedelta(seconds=1), limit=10) == []
        workflow_run_advance(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.WAITING
    with time_machine.travel(morning_utc, tick=False):
        assert workflow_runs_due(now=morning_utc, limit=10) == [run.pk]
        workflow_run_advance(run_id=run.pk)
    run.refresh_from_db()
    assert [o["status"] for o in run.outcomes] == ["deferred", "succeeded"]
    assert run.status == WorkflowRun.Status.SUCCEEDED
    assert Delivery.objects.count() == 1
    assert PolicyUsage.objects.get().at == morning_utc


def test_a_workflow_without_a_policy_is_not_policed(
    make_policy: Callable[..., DeliveryPolicy],
    policed_workflow: Callable[..., Workflow],
    start_run: Callable[..., WorkflowRun],
    make_workflow: Callable[..., Workflow],
    allow_loopback: None,
) -> None:
    make_policy(caps=[{"count": 1, "window": "P1D", "actions": ["webhook"]}])
    free = make_workflow(actions=[{"type": "webhook", "url": HOOK}])
    alice = Customer.objects.create(external_id="alice")
    for _ in range(3):
        assert statuses(advance(start_run(free, alice), NOON)) == [(0, "succeeded")]
    assert PolicyUsage.objects.count() == 0


def test_the_prune_job_deletes_ledger_rows_older_than_any_window(
    make_policy: Callable[..., DeliveryPolicy],
) -> None:
    from project.background import run_job

    policy = make_policy()
    alice = Customer.objects.create(external_id="alice")
    for days in (366, 364):
        PolicyUsage.objects.create(
            policy=policy, customer=alice, action_type="webhook", at=NOON - timedelta(days=days)
        )
    assert run_job("policies.prune", NOON) == 1
    assert [u.at for u in PolicyUsage.objects.all()] == [NOON - timedelta(days=364)]
