"""Broadcasts: a workflow's actions once for every member at the moment of the request,
exactly once per (broadcast_key, customer), resumable, one broadcast per key."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from automation.segments.broadcasts import broadcast_advance, broadcast_run
from automation.segments.models import Segment, SegmentBroadcast, SegmentMembership
from automation.segments.services import SegmentInput, segment_create, segments_sweep_due
from automation.workflows.models import Workflow, WorkflowRun
from automation.workflows.services import WorkflowInput, workflow_create, workflow_set_active
from customers.models import Customer
from events_app.api_clients import api_client_create
from events_app.models import EventType
from tests.conftest import API, basic_auth

pytestmark = pytest.mark.django_db

VIP = {"customer": "tags", "op": "contains", "value": "vip"}


def customers(*names: str, tags: list[str] | None = None) -> list[Customer]:
    return [
        Customer.objects.create(external_id=n, tags=["vip"] if tags is None else tags)
        for n in names
    ]


@pytest.fixture
def vip(make_segment: Callable[..., Segment]) -> Segment:
    customers("ann", "ben", "cat")
    customers("dan", tags=[])
    return make_segment("vip", VIP)


@pytest.fixture
def welcome(purchase: EventType) -> Workflow:
    return workflow_create(
        data=WorkflowInput(
            name="Welcome",
            trigger_event_types=["purchase"],
            # A broadcast ignores the conditions: nobody matches this one.
            conditions={"customer": "email", "op": "eq", "value": "nobody@example.com"},
            actions=[{"type": "add_tags", "tags": ["welcomed"]}],
        )
    )


def post(api: APIClient, segment: str, workflow_id: str, key: str = "spring") -> Any:
    return api.post(
        f"{API}/segments/{segment}/broadcast",
        {"workflow_id": workflow_id, "broadcast_key": key},
        format="json",
    )


def test_a_broadcast_runs_the_actions_once_for_every_member_without_the_conditions(
    contract_api: APIClient,
    vip: Segment,
    welcome: Workflow,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(contract_api, "vip", welcome.pk)
    assert response.status_code == 202, response.json()
    data = response.json()["data"]
    assert (data["broadcast_key"], data["segment_id"], data["workflow_id"]) == (
        "spring",
        vip.pk,
        welcome.pk,
    )
    assert (data["status"], data["members_total"], data["members_done"]) == ("running", 3, 0)

    progress = contract_api.get(f"{API}/segments/vip/broadcasts/spring").json()["data"]
    assert (progress["status"], progress["members_total"], progress["members_done"]) == (
        "done",
        3,
        3,
    )
    runs = WorkflowRun.objects.filter(workflow=welcome)
    assert sorted(runs.values_list("customer__external_id", flat=True)) == ["ann", "ben", "cat"]
    assert all(r.trigger == {"broadcast": "spring", "segment": "vip"} for r in runs)
    assert all(r.event_id is None and r.status == "succeeded" for r in runs)
    assert sorted(
        Customer.objects.filter(tags__contains=["welcomed"]).values_list("external_id", flat=True)
    ) == [
        "ann",
        "ben",
        "cat",
    ]


def test_the_same_key_again_answers_200_with_the_broadcast_and_starts_nothing(
    api: APIClient, vip: Segment, welcome: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api, "vip", welcome.pk)
    customers("eve")  # a new member would get a run if anything started again
    with django_capture_on_commit_callbacks(execute=True) as started:
        again = post(api, vip.pk, welcome.pk)
    assert again.status_code == 200
    shown = dict(again.json()["data"])
    assert shown.pop("finished_at") is not None
    before = {k: v for k, v in first.json()["data"].items() if k != "finished_at"}
    assert shown == {**before, "status": "done", "members_done": 3}
    assert started == []
    assert WorkflowRun.objects.count() == 3
    assert SegmentBroadcast.objects.count() == 1


def test_a_key_used_for_another_workflow_is_a_409(
    api: APIClient, vip: Segment, welcome: Workflow, purchase: EventType
) -> None:
    other = workflow_create(data=WorkflowInput(name="Other", trigger_event_types=["purchase"]))
    assert post(api, "vip", welcome.pk).status_code == 202
    response = post(api, "vip", other.pk)
    assert response.status_code == 409
    assert SegmentBroadcast.objects.count() == 1


def test_refusals_are_answered_and_start_nothing(
    api: APIClient, vip: Segment, welcome: Workflow, make_segment: Callable[..., Segment]
) -> None:
    unknown = post(api, "vip", "nope")
    assert unknown.status_code == 400
    assert unknown.json()["details"] == {"workflow_id": ["Unknown workflow 'nope'."]}
    assert post(api, "vip", welcome.pk, key="a b/c").status_code == 400
    assert post(api, "vip", welcome.pk, key="x" * 129).status_code == 400
    assert post(api, "no-such-segment", welcome.pk).status_code == 404
    assert (
        api.post(
            f"{API}/segments/vip/broadcast", {"workflow_id": welcome.pk}, format="json"
        ).status_code
        == 400
    )
    workflow_set_active(workflow=welcome, active=False)
    assert post(api, "vip", welcome.pk).status_code == 409
    assert api.get(f"{API}/segments/vip/broadcasts/spring").status_code == 404
    assert SegmentBroadcast.objects.count() == 0
    assert WorkflowRun.objects.count() == 0


def test_members_are_those_at_the_moment_of_the_request(
    api: APIClient,
    vip: Segment,
    welcome: Workflow,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        assert post(api, "vip", welcome.pk).status_code == 202
    broadcast = SegmentBroadcast.objects.get()
    later = broadcast.as_of + timedelta(seconds=1)
    ann = Customer.objects.get(external_id="ann")
    # After the request: ann exits (still gets it), fay enters (does not).
    SegmentMembership.objects.filter(customer=ann).update(exited_at=later)
    (fay,) = customers("fay")
    SegmentMembership.objects.create(segment=vip, customer=fay, entered_at=later)

    broadcast_run(broadcast_id=broadcast.pk)
    assert sorted(WorkflowRun.objects.values_list("customer__external_id", flat=True)) == [
        "ann",
        "ben",
        "cat",
    ]


def test_a_broadcast_resumes_after_a_crash_from_its_cursor(
    api: APIClient,
    vip: Segment,
    welcome: Workflow,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.HERALD_SEGMENT_BATCH_SIZE = 2
    with django_capture_on_commit_callbacks(execute=False):
        post(api, "vip", welcome.pk)  # its task is lost
    broadcast = SegmentBroadcast.objects.get()
    assert broadcast_advance(broadcast_id=broadcast.pk) is True  # one batch, then a "crash"
    broadcast.refresh_from_db()
    assert (broadcast.members_done, broadcast.status) == (2, "running")

    # The sweep hands on a broadcast its worker left quiet for the grace period.
    with django_capture_on_commit_callbacks(execute=True):
        segments_sweep_due(now=timezone.now() + timedelta(minutes=5))
    broadcast.refresh_from_db()
    assert (broadcast.members_done, broadcast.members_total, broadcast.status) == (3, 3, "done")
    assert Counter(WorkflowRun.objects.values_list("customer__external_id", flat=True)) == {
        "ann": 1,
        "ben": 1,
        "cat": 1,
    }


def test_a_workflow_deactivated_meanwhile_cancels_the_broadcast(
    api: APIClient, vip: Segment, welcome: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        post(api, "vip", welcome.pk)
    workflow_set_active(workflow=welcome, active=False)
    broadcast_run(broadcast_id=SegmentBroadcast.objects.get().pk)
    assert SegmentBroadcast.objects.get().status == "cancelled"
    assert WorkflowRun.objects.count() == 0


def test_a_broadcast_refused_while_the_segment_is_building(
    api: APIClient, welcome: Workflow, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        segment_create(data=SegmentInput(key="later", name="Later", condition=VIP))
    response = post(api, "later", welcome.pk)
    assert response.status_code == 409
    assert "being built" in response.json()["message"]


@pytest.mark.xdist_group("races")  # 50 connections each: one such race at a time
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_posts_with_one_key_make_one_broadcast() -> None:
    EventType.objects.create(key="purchase", name="Purchase")
    customers("ann", "ben")
    segment = segment_create(data=SegmentInput(key="vip", name="VIP", condition=VIP))
    workflow = workflow_create(data=WorkflowInput(name="W", trigger_event_types=["purchase"]))
    client, secret = api_client_create(name="race", scopes=["read", "write"])
    auth = basic_auth(client.name, secret)
    start = threading.Barrier(50)
    statuses: list[int] = []
    lock = threading.Lock()

    def racer() -> None:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=auth)
        try:
            start.wait(timeout=30)
            response = post(api, segment.pk, workflow.pk, key="once")
            with lock:
                statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=racer) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert Counter(statuses) == {202: 1, 200: 49}
    assert SegmentBroadcast.objects.count() == 1
    assert Counter(WorkflowRun.objects.values_list("customer__external_id", flat=True)) == {
        "ann": 1,
        "ben": 1,
    }
