"""Log lines as HERALD_LOG_FORMAT chooses them, in a web process and in a Celery worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from automation.webhooks.models import Delivery
from tests.celery_worker import BASE_DIR, celery_broker, celery_worker, wait_until
from tests.conftest import API
from tests.factories import CustomerFactory, EventTypeFactory

LOG_ONE_LINE = """
import django, logging
django.setup()
from project.requestid import REQUEST_ID
REQUEST_ID.set("req-abc")
logging.getLogger("herald.check").warning("stored %d events", 3)
"""


def run_django(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh process with these settings and log one line."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_LOG")},
        "HERALD_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "project.settings",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own fixed command line
        [sys.executable, "-c", LOG_ONE_LINE],
        cwd=BASE_DIR, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_json_format_writes_one_object_per_line_with_the_request_id(tmp_path):
    result = run_django(tmp_path, HERALD_LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert set(record) == {"timestamp", "level", "logger", "message", "request_id"}
    assert record["level"] == "WARNING"
    assert record["logger"] == "herald.check"
    assert record["message"] == "stored 3 events"
    assert record["request_id"] == "req-abc"
    assert record["timestamp"].endswith("+00:00")


def test_text_format_is_the_default_outside_production(tmp_path):
    result = run_django(tmp_path)

    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.endswith(" WARNING herald.check [req-abc] stored 3 events")


def test_json_is_the_default_in_production(tmp_path):
    result = run_django(
        tmp_path,
        HERALD_PRODUCTION="1",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="herald.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/herald_unused",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.splitlines()[-1])["request_id"] == "req-abc"


def test_an_unknown_log_format_stops_the_start(tmp_path):
    result = run_django(tmp_path, HERALD_LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "HERALD_LOG_FORMAT must be json or text." in result.stderr


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line that is a JSON object (a worker may print a banner that is not)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_workers_log_lines_carry_the_id_of_the_request_that_caused_the_work(
    api, receiver, allow_loopback
):
    purchase = EventTypeFactory(key="purchase")
    hook = {"webhook": {"url": receiver.url()}}
    assert api.post(f"{API}/webhooks", hook, format="json").status_code == 201
    customer = CustomerFactory()

    with (
        celery_broker() as broker,
        celery_worker(broker, env={"HERALD_LOG_FORMAT": "json"}) as worker,
    ):
        response = api.post(
            f"{API}/events",
            {"event": {"event_type_id": purchase.id, "customer_id": customer.id}},
            format="json",
            HTTP_X_REQUEST_ID="ingest-req-7",
        )
        receiver.wait_for(1, timeout=30)
        wait_until(lambda: Delivery.objects.filter(status="succeeded").exists(), what="success")
        wait_until(lambda: "succeeded in" in worker.log(), what="the worker's task line")

    assert response["X-Request-ID"] == "ingest-req-7"
    records = json_lines(worker.log())
    assert records, worker.log()
    (done,) = [
        r for r in records if r["logger"] == "celery.app.trace" and "succeeded in" in r["message"]
    ]
    assert done["request_id"] == "ingest-req-7"
    assert "automation.deliver_one" in done["message"]
    # Lines of the worker that belong to no request (start-up) carry none.
    assert any(r["request_id"] is None for r in records)
