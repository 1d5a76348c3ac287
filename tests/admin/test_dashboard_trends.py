"""The dashboard's trends: the numbers of every chart are on the page (without the
canvas), from the hourly counters and the automation tables."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from automation.webhooks.models import Delivery, Endpoint
from automation.workflows.models import Workflow, WorkflowRun
from events_app.activity import Rejection, rejections_record
from tests.admin_support import marketer_client
from tests.factories import ApiClientFactory, CustomerFactory, EventFactory, EventTypeFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(minute=30, second=0, microsecond=0)
EVERYTHING = [
    "events_app.view_event",
    "automation.view_delivery",
    "automation.view_workflowrun",
]


def totals(html: str, chart: str) -> dict[str, int]:
    figure = html.split(f'id="trend-{chart}"', 1)[1].split("</figcaption>", 1)[0]
    return {
        label: int(value.replace(",", ""))
        for label, value in re.findall(r'data-total="([^"]+)">([\d,]+)<', figure)
    }


@pytest.fixture
def activity():
    purchase = EventTypeFactory(key="purchase")
    customer = CustomerFactory()
    with time_machine.travel(NOW - timedelta(days=2), tick=False):
        old = EventFactory(event_type=purchase, customer=customer)
        workflow = Workflow.objects.create(name="w")
        WorkflowRun.objects.create(
            workflow=workflow,
            event=old,
            customer=customer,
            status=WorkflowRun.Status.FAILED,
            created_at=timezone.now(),
        )
    with time_machine.travel(NOW, tick=False):
        EventFactory.create_batch(3, event_type=purchase, customer=customer)
        endpoint = Endpoint.objects.create(url="https://example.com/h", secret="s" * 32)
        for n, (status, attempts) in enumerate(
            [("succeeded", 1), ("failed", 3), ("pending", 2), ("pending", 0)]
        ):
            Delivery.objects.create(
                endpoint=endpoint,
                payload={},
                message_id=f"m{n}",
                status=status,
                attempt_count=attempts,
            )
    rejections_record(
        api_client_id=ApiClientFactory().pk,
        rejections=[Rejection(0, "bad"), Rejection(1, "bad")],
        now=NOW,
    )


@time_machine.travel(NOW, tick=False)
def test_the_last_24_hours_by_the_hour(activity):
    staff = marketer_client(EVERYTHING)

    html = staff.get("/admin/").text

    assert totals(html, "events") == {"purchase": 3}
    assert totals(html, "runs") == {"runs started": 0, "failed": 0}
    assert totals(html, "deliveries") == {"succeeded": 1, "failed": 1, "retrying": 1}
    assert totals(html, "rejections") == {"items rejected": 2}
    assert 'id="herald-trends-data"' in html
    assert html.count('<th scope="row">') >= 24 * 4


@time_machine.travel(NOW, tick=False)
def test_the_last_7_days_by_the_day(activity):
    staff = marketer_client(EVERYTHING)

    html = staff.get("/admin/", {"trend": "7d"}).text

    assert totals(html, "events") == {"purchase": 4}
    assert totals(html, "runs") == {"runs started": 1, "failed": 1}


@time_machine.travel(NOW, tick=False)
def test_staff_without_automation_permissions_see_no_automation_charts(activity):
    staff = marketer_client(["events_app.view_event"])

    html = staff.get("/admin/").text

    assert 'id="trend-events"' in html
    assert 'id="trend-runs"' not in html
    assert 'id="trend-deliveries"' not in html
