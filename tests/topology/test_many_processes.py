"""The documented topology, for real: 2 web, 3 workers (one per queue) and 2 schedulers
started from the Procfile against one PostgreSQL and one Redis, under a mixed load, with
one process of each kind SIGKILLed mid-run (a machine that died).

What it shows, from what a client and a receiver can observe (the API's answers, the
requests a loopback receiver got, the rows of runs and ticks):
- every acknowledged event is stored once;
- every workflow run and every schedule tick happens exactly once;
- every delivery due is received at least once; a repeat (a send the killed worker never
  recorded) carries the same `webhook-id`, and there are no more repeats than kills;
- nothing is left pending.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.db import connection
from django.utils import timezone

from automation.schedules.models import ScheduleRun
from automation.webhooks.models import Delivery
from automation.workflows.models import WorkflowRun
from events_app.api_clients import api_client_create
from events_app.models import Event, EventType
from tests.celery_worker import broker_url, checkout_namespace, delete_keys, xdist_worker
from tests.conftest import API, basic_auth
from tests.receiver import ReceivedRequest, Receiver, Reply, local_receiver
from tests.topology.processes import (
    Process,
    ProcessGroup,
    database_url,
    free_ports,
    topology_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SINGLES = 40
BATCHES = 8
BATCH_SIZE = 15
TYPES = ("purchase", "visit")  # purchases are subscribed to and trigger the workflow


class Gate:
    """Holds the next request to one path unanswered until opened: the sender that made
    it is then mid-attempt, and a kill leaves an attempt it never recorded."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.armed = False
        self.held: ReceivedRequest | None = None
        self.opened = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, request: ReceivedRequest) -> Reply:
        with self.lock:
            hold = self.armed and self.held is None and request.path == self.path
            if hold:
                self.held = request
        if hold:
            self.opened.wait(timeout=60)
        return Reply()


class Loader:
    """Sends events as a client behind a load balancer would: each request to the next
    live web process; a request that gets no answer (its process died) is sent again,
    the same body, to another one. An answer that says a ref already exists counts as
    stored: the first try was stored before its process died."""

    def __init__(self, webs: list[Process], auth: str) -> None:
        self.webs = webs
        self.headers = {"Authorization": auth, "Content-Type": "application/json"}
        self.acknowledged: list[tuple[str, str]] = []  # (event type, ref)
        self.resent = 0
        self.turn = 0
        self.errors: list[str] = []

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        deadline = time.monotonic() + 60
        while True:
            web = self.webs[self.turn % len(self.webs)]
            self.turn += 1
            try:
                return requests.post(
                    web.url(f"{API}{path}"), data=json.dumps(body), headers=self.headers,
                    timeout=20,
                )  # fmt: skip
            except requests.ConnectionError:
                self.resent += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def single(self, kind: str, ref: str, customer: str) -> None:
        event = {"event_type": kind, "customer_external_id": customer, "external_id": ref}
        answer = self.post("/events", {"event": event})
        if answer.status_code == 201 or (answer.status_code == 409 and "event_id" in answer.json()):
            self.acknowledged.append((kind, ref))
        else:
            self.errors.append(f"POST /events {ref}: {answer.status_code} {answer.text[:300]}")

    def batch(self, items: list[tuple[str, str, str]]) -> None:
        events = [
            {"event": {"event_type": k, "customer_external_id": c, "external_id": r}}
            for k, r, c in items
        ]
        answer = self.post("/events/batch", {"events": events})
        if answer.status_code != 200:
            self.errors.append(f"POST /events/batch: {answer.status_code} {answer.text[:300]}")
            return
        data = answer.json()["data"]
        for valid in data["valid_events"]:
            self.acknowledged.append(items[valid["index"]][:2])
        for invalid in data["invalid_events"]:
            if invalid["error"] == "Event ref already exists.":
                self.acknowledged.append(items[invalid["index"]][:2])
            else:
                self.errors.append(f"batch item refused: {invalid}")

    def run(self, part: int, parts: int, pause: Callable[[int], None] = lambda _i: None) -> None:
        """This part of the load: single POSTs and batches, interleaved."""
        for i in range(part, max(SINGLES, BATCHES), parts):
            pause(i)
            if i < SINGLES:
                self.single(TYPES[i % 2], f"s{i}", f"c{i % 12}")
            if i < BATCHES:
                self.batch([(TYPES[j % 2], f"b{i}-{j}", f"c{j % 12}") for j in range(BATCH_SIZE)])


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, what: str, group: ProcessGroup
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Timed out after {timeout} s waiting for {what}\n{group.describe()}"
            )
        time.sleep(0.2)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[ProcessGroup]:
    """The shared environment; this run's Redis keys deleted before and after."""
    prefix = f"{checkout_namespace()}{xdist_worker() or 'main'}-topology:"
    client = redis.Redis.from_url(broker_url())
    delete_keys(client, prefix)
    env = topology_env(
        database_url=database_url(connection.settings_dict),
        broker_url=broker_url(),
        key_prefix=prefix,
        var_dir=tmp_path / "var",
        # Short leases and grace so a killed worker's work is taken over within seconds.
        HERALD_OUTBOUND_TIMEOUT="3",
        HERALD_DELIVERY_CLAIM_MARGIN="1",
        HERALD_AUTOMATION_GRACE_SECONDS="2",
        HERALD_SCHEDULE_MIN_INTERVAL_SECONDS="1",
        WEB_CONCURRENCY="1",
        WEB_THREADS="4",
        # One sending thread: at the kill it has exactly one attempt in flight, the held one.
        DELIVERY_THREADS="1",
        EVALUATION_THREADS="2",
        SCHEDULES_THREADS="2",
    )
    try:
        with ProcessGroup(env=env, log_dir=tmp_path) as group:
            yield group
    finally:
        delete_keys(client, prefix)
        client.close()


@pytest.fixture
def topology_receiver() -> Iterator[Receiver]:
    with local_receiver() as receiver:
        yield receiver


def test_many_processes_with_one_of_each_kind_killed_lose_nothing_and_do_nothing_twice(
    deployment: ProcessGroup, topology_receiver: Receiver
) -> None:
    group, receiver = deployment, topology_receiver
    for key in TYPES:
        EventType.objects.create(key=key, name=key.title())
    client, secret = api_client_create(name="topology", scopes=["read", "write"])
    auth = basic_auth(client.name, secret)
    gate = Gate("/sub")
    receiver.responder = gate

    # Given 2 web, 3 workers (one per queue) and 2 schedulers, as the Procfile starts them
    port_a, port_b = free_ports(2)
    webs = [group.start("web", port=port_a), group.start("web", port=port_b)]
    workers = {kind: group.start(kind) for kind in ("deliveries", "evaluation", "schedules")}
    beats = [group.start("beat"), group.start("beat")]
    for process in [*webs, *workers.values(), *beats]:
        process.wait_ready()
    loader = Loader(webs, auth)

    # ... a webhook on purchases, a workflow (wait, then a webhook) and a schedule
    # firing every second, all calling the loopback receiver
    hook = loader.post(
        "/webhooks", {"webhook": {"url": receiver.url("/sub"), "event_types": ["purchase"]}}
    )
    assert hook.status_code == 201, hook.text
    workflow = loader.post(
        "/workflows",
        {
            "workflow": {
                "name": "follow up",
                "trigger_event_types": ["purchase"],
                "conditions": {},
                "actions": [
                    {"type": "wait", "duration": "PT1S"},
                    {"type": "webhook", "url": receiver.url("/wf")},
                ],
            }
        },
    )
    assert workflow.status_code == 201, workflow.text
    end = (timezone.now() + timedelta(hours=1)).isoformat()
    schedule = loader.post(
        "/schedules",
        {
            "schedule": {
                "owner": "ops@example.com", "end_date": end, "interval": "* * * * * *",
                "callback_url": receiver.url("/sched"), "context": {"tick": True},
            }
        },
    )  # fmt: skip
    assert schedule.status_code == 201, schedule.text
    schedule_id = schedule.json()["data"]["schedule_id"]

    # When the first half of the load is sent
    loader.run(0, 2)
    # ... a delivery is held mid-attempt, and then one process of each kind is killed
    # while the second half is being sent
    gate.armed = True
    loader.single("purchase", "held", "c0")  # its webhook delivery is the one held
    wait_for(lambda: gate.held, timeout=30, what="a delivery to /sub in flight", group=group)
    killed = [workers["deliveries"], webs[0], workers["evaluation"], workers["schedules"], beats[0]]

    def kill_midway(i: int) -> None:
        if i == 3:
            for process in killed:
                process.kill()
            gate.opened.set()

    loader.run(1, 2, pause=kill_midway)
    assert all(p.killed for p in killed), "the load ended before the kills"
    # ... and the workers are replaced (the web and the scheduler that died are not)
    for process in [group.start(kind) for kind in ("deliveries", "evaluation", "schedules")]:
        process.wait_ready()
    restarted = timezone.now()
    assert not loader.errors, loader.errors
    assert loader.resent, "no request met the killed web process"

    # Then, once the work is done (the schedule paused so that it stops adding more)
    def purchases() -> list[str]:
        return list(Event.objects.filter(event_type__key="purchase").values_list("id", flat=True))

    wait_for(
        lambda: WorkflowRun.objects.filter(status="succeeded").count() == len(purchases()),
        timeout=60, what="a succeeded run per purchase", group=group,
    )  # fmt: skip
    # ... the schedule fires again after the kills (the surviving scheduler ticks, the new
    # worker fires) ...
    wait_for(
        lambda: ScheduleRun.objects.filter(scheduled_for__gt=restarted).exists(),
        timeout=30, what="a schedule tick after the restart", group=group,
    )  # fmt: skip
    paused = loader.post(f"/schedules/{schedule_id}/pause", {})
    assert paused.status_code == 200, paused.text
    wait_for(
        lambda: not Delivery.objects.filter(status="pending").exists(),
        timeout=60, what="no delivery pending", group=group,
    )  # fmt: skip
    group.stop_all()

    # every acknowledged event is stored once, and nothing else
    acknowledged = Counter(loader.acknowledged)
    assert len(acknowledged) == SINGLES + BATCHES * BATCH_SIZE + 1
    assert set(acknowledged.values()) == {1}
    stored = Counter(Event.objects.values_list("event_type__key", "external_id"))
    assert stored == acknowledged

    # every workflow run exactly once: one per purchase, each succeeded
    purchase_ids = set(purchases())
    runs = list(WorkflowRun.objects.values_list("event_id", "status", "id"))
    assert sorted(event for event, _, _ in runs) == sorted(purchase_ids)
    assert {status for _, status, _ in runs} == {"succeeded"}

    # every schedule tick exactly once: distinct ticks, each with one callback
    ticks = list(
        ScheduleRun.objects.values_list(
            "scheduled_for", "delivery__message_id", "delivery__status", "delivery__last_error"
        )
    )
    # (how many ticks fall due depends on how long the run took; before and after the
    # kills is what counts)
    assert min(t[0] for t in ticks) < restarted < max(t[0] for t in ticks), ticks
    assert len({t[0] for t in ticks}) == len(ticks)

    # every due delivery received at least once; a repeat carries the same webhook-id
    requests_by_id: dict[str, list[ReceivedRequest]] = defaultdict(list)
    for request in receiver.requests:
        requests_by_id[request.headers["webhook-id"]].append(request)
    ids_by_event: dict[str, set[str]] = defaultdict(set)
    ids_by_run: dict[str, set[str]] = defaultdict(set)
    for message_id, received in requests_by_id.items():
        assert len({(r.path, r.body) for r in received}) == 1, f"{message_id} sent differently"
        body = json.loads(received[0].body)
        if received[0].path == "/sub":
            ids_by_event[body["event_id"]].add(message_id)
        elif received[0].path == "/wf":
            ids_by_run[body["workflow_run_id"]].add(message_id)
    assert set(ids_by_event) == purchase_ids
    assert all(len(ids) == 1 for ids in ids_by_event.values()), "two deliveries of one event"
    assert set(ids_by_run) == {run_id for _, _, run_id in runs}
    assert all(len(ids) == 1 for ids in ids_by_run.values()), "two webhooks of one run"
    for _, message_id, status, last_error in ticks:
        # A tick's callback is retried until the next tick is due, then given up: the
        # ticks that fell due while the sending worker was dead are given up unsent.
        assert message_id in requests_by_id or (
            status == "failed" and last_error.startswith("Gave up")
        ), (message_id, status, last_error)
    repeats = sum(len(received) - 1 for received in requests_by_id.values())
    assert gate.held is not None
    assert len(requests_by_id[gate.held.headers["webhook-id"]]) == 2, (
        "the held send was not repeated"
    )
    assert 1 <= repeats <= len(killed)

    # nothing is left pending
    assert not Delivery.objects.filter(status="pending").exists()
    assert not WorkflowRun.objects.exclude(status="succeeded").exists()
