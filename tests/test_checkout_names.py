"""Names a test run gives what it creates on a shared PostgreSQL and Redis
(tests/celery_worker.py, scripts/test)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from tests.celery_worker import (
    BASE_DIR,
    broker_for_this_process,
    broker_url,
    checkout_id,
    delete_keys,
)


def test_checkout_id_is_the_start_of_the_paths_sha1_as_scripts_test_computes_it() -> None:
    path = Path("/srv/checkouts/herald two")
    # The pipeline scripts/test runs on `pwd -P`.
    shell = subprocess.run(  # noqa: S603 - a fixed command line
        ["bash", "-c", 'printf %s "$1" | sha1sum | cut -c1-8', "-", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert checkout_id(path) == shell
    assert len(shell) == 8
    assert int(shell, 16) >= 0


def test_two_checkouts_get_different_ids_and_one_checkout_always_the_same() -> None:
    assert checkout_id(Path("/work/main")) != checkout_id(Path("/work/wt-scripts"))
    assert checkout_id(Path("/work/main")) == checkout_id(Path("/work/main"))
    assert checkout_id() == checkout_id(BASE_DIR)


def test_queue_and_key_prefix_carry_the_checkout_id_and_the_xdist_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")

    broker = broker_for_this_process()

    assert broker.queue == f"herald-test-{checkout_id()}-gw3"
    assert broker.key_prefix == f"herald-test-{checkout_id()}-gw3:"
    assert broker.transport_options({"visibility_timeout": 3600}) == {
        "visibility_timeout": 3600,
        "global_keyprefix": broker.key_prefix,
    }


def test_deleting_by_prefix_leaves_other_keys_in_the_shared_database() -> None:
    client = redis.Redis.from_url(broker_url())
    run = uuid.uuid4().hex
    ours = [f"herald-test-{run}-gw0:q", f"herald-test-{run}-gw0:_kombu.binding.q"]
    others = [f"herald-test-{run}-gw1:q", f"herald-test-{run}x:q"]
    try:
        for key in ours + others:
            client.set(key, "1")

        deleted = delete_keys(client, f"herald-test-{run}-gw0:")

        assert deleted == 2
        assert client.exists(*ours) == 0
        assert client.exists(*others) == 2
    finally:
        client.delete(*ours, *others)
        client.close()
