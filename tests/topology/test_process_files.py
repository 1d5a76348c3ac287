"""The Procfile and compose.yaml describe the same deployment, and it covers every queue.

compose.yaml cannot be started here (no Docker engine): it is checked as a document.
The Procfile's lines are run for real by test_many_processes.py.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from project.celery import all_queues
from tests.topology.processes import BASE_DIR, procfile

PROCESS_TYPES = {"web", "deliveries", "evaluation", "schedules", "beat"}
DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^${}]*)\}")


def expand_defaults(command: str) -> str:
    """${NAME:-default} -> default, innermost first (what sh does with NAME unset)."""
    while (expanded := DEFAULTED.sub(lambda m: m.group(2), command)) != command:
        command = expanded
    return command


def compose() -> dict[str, Any]:
    return yaml.safe_load((BASE_DIR / "compose.yaml").read_text())


def queues_of(command: str) -> set[str]:
    args = shlex.split(expand_defaults(command))
    return set(args[args.index("-Q") + 1].split(",")) if "-Q" in args else set()


def test_the_procfile_has_web_a_worker_per_queue_and_beat() -> None:
    lines = procfile()
    assert set(lines) == PROCESS_TYPES
    assert queues_of(lines["deliveries"]) == {"deliveries"}
    assert queues_of(lines["evaluation"]) == {"evaluation"}
    assert queues_of(lines["schedules"]) == {"schedules", "celery"}
    consumed = set().union(*(queues_of(line) for line in lines.values()))
    assert consumed == set(all_queues("celery")), "a queue nobody consumes"


def test_every_procfile_line_runs_one_program_in_place_of_the_shell() -> None:
    # `exec`: the signal a supervisor (or a test's SIGKILL) sends reaches the program.
    for kind, line in procfile().items():
        program = shlex.split(expand_defaults(line))
        assert program[0] == "exec", kind
        assert program[1] in {"gunicorn", "celery"}, kind


def test_compose_runs_exactly_the_procfile_lines_against_one_postgres_and_one_redis() -> None:
    services = compose()["services"]
    lines = procfile()
    assert set(services) == PROCESS_TYPES | {"postgres", "redis", "migrate"}
    for kind in PROCESS_TYPES:
        assert services[kind]["command"] == ["sh", "-c", lines[kind]], kind
        env = services[kind]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://herald:herald@postgres:5432/")
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert services[kind]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["beat"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("service", sorted(PROCESS_TYPES | {"migrate"}))
def test_compose_dependencies_name_services_that_exist(service: str) -> None:
    services = compose()["services"]
    assert set(services[service]["depends_on"]) <= set(services)
