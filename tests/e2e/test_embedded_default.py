"""The embedded default as `scripts/dev` runs it: SQLite, in-process background work, gunicorn.

Every other test runs on PostgreSQL; this module is the one place the embedded
default is exercised end to end, in its own processes, so that a SQLite-only
difference (types a raw cursor returns, locking) or a broken in-process ticker
shows up here rather than on a user's first run.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.receiver import local_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("embedded")]

ROOT = Path(__file__).resolve().parents[2]
API = "/rest-api/enterprise-interface/v1.0"


@dataclass
class Herald:
    base: str
    key: str
    password: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{API}{path}", data=data, method=method)  # noqa: S310 - loopback, fixed arguments
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback, fixed arguments
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(base: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):  # noqa: S310 - loopback, fixed arguments
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Herald did not start serving in time")


@pytest.fixture(scope="module")
def herald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(
        HERALD_VAR_DIR=str(tmp_path_factory.mktemp("var")),
        HERALD_PUBLIC_URL=base,
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    python = sys.executable
    subprocess.run(  # noqa: S603 - loopback, fixed arguments
        [python, "manage.py", "migrate", "--noinput"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    seeded = subprocess.run(  # noqa: S603 - loopback, fixed arguments
        [python, "manage.py", "seed_demo", "--events", "120", "--customers", "10"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    key = re.search(r"secret (hrld_\S+)", seeded.stdout)
    password = re.search(r"password: (\S+)", seeded.stdout)
    assert key, seeded.stdout
    assert password, seeded.stdout
    gunicorn = Path(python).with_name("gunicorn")
    proc = subprocess.Popen(  # noqa: S603 - loopback, fixed arguments
        [
            str(gunicorn),
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_serving(base, proc, time.monotonic() + 30)
        yield Herald(base=base, key=key.group(1), password=password.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_printed_key_reads_the_demo_events_on_every_request(herald: Herald) -> None:
    # Twice: the second request reads the key's last-used time back from SQLite.
    for _ in range(2):
        status, body = herald.call("GET", "/events?count=5")
        assert status == 200
        assert len(body["data"]["events"]) == 5
        assert body["data"]["total_items"] == 120


def test_single_and_batch_ingestion_and_status_work_on_sqlite(herald: Herald) -> None:
    status, created = herald.call(
        "POST",
        "/events",
        {"event": {"event_type": "login", "customer_external_id": "embedded-1"}},
    )
    assert status == 201
    event_id = created["data"]["event_id"]

    status, batch = herald.call(
        "POST",
        "/events/batch",
        {
            "events": [
                {
                    "event": {
                        "event_type": "login",
                        "customer_external_id": "embedded-2",
                        "external_id": "emb-ref-1",
                    }
                },
                {
                    "event": {
                        "event_type": "login",
                        "customer_external_id": "embedded-2",
                        "external_id": "emb-ref-1",
                    }
                },
            ]
        },
    )
    assert status == 200
    assert [v["index"] for v in batch["data"]["valid_events"]] == [0]
    assert batch["data"]["invalid_events"][0]["error"] == "Event ref already exists."

    assert herald.call("PATCH", f"/events/{event_id}", {"status": "completed"})[0] == 200
    assert herald.call("PATCH", f"/events/{event_id}", {"status": "failed"})[0] == 409


def test_webhook_is_delivered_signed_by_the_in_process_worker(herald: Herald) -> None:
    with local_receiver() as receiver:
        status, created = herald.call(
            "POST",
            "/webhooks",
            {"webhook": {"url": receiver.url("/hook"), "event_types": ["signup"]}},
        )
        assert status == 201, created
        secret = created["data"]["secret"]

        status, event = herald.call(
            "POST",
            "/events",
            {
                "event": {"event_type": "signup", "customer_external_id": "embedded-3"},
                "property_records": [{"property_id": "plan", "property_value": "pro"}],
            },
        )
        assert status == 201

        [request] = receiver.wait_for(1, timeout=15)
    payload = Webhook(secret).verify(request.body, request.headers)
    assert json.dumps(payload).find(event["data"]["event_id"]) != -1


def test_printed_admin_password_logs_in_and_docs_are_served(herald: Herald) -> None:
    with urllib.request.urlopen(f"{herald.base}{API}/docs/", timeout=10) as response:  # noqa: S310 - loopback, fixed arguments
        assert response.status == 200

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = f"{herald.base}/admin/login/?next=/admin/"
    page = opener.open(login_url, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token.group(1), "username": "admin", "password": herald.password}
    ).encode()
    request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})  # noqa: S310 - loopback, fixed arguments
    with opener.open(request, timeout=10) as response:
        assert response.url == f"{herald.base}/admin/"
        assert "Herald" in response.read().decode()


def test_deleting_a_customer_erases_their_events_on_sqlite(herald: Herald) -> None:
    total = herald.call("GET", "/events?count=1")[1]["data"]["total_items"]
    for _ in range(2):
        status, _ = herald.call(
            "POST",
            "/events",
            {"event": {"event_type": "login", "customer_external_id": "embedded-erased"}},
        )
        assert status == 201
    status, listed = herald.call("GET", "/customers?external_id=embedded-erased")
    [customer] = listed["data"]["customers"]

    status, deleted = herald.call("DELETE", f"/customers/{customer['customer_id']}")

    assert (status, deleted["data"]) == (200, customer)
    assert herald.call("GET", f"/customers/{customer['customer_id']}")[0] == 404
    assert herald.call("GET", "/events?count=1")[1]["data"]["total_items"] == total
