"""Herald's processes as the Procfile starts them, for tests and benchmarks of a topology.

    with ProcessGroup(env=topology_env(...), log_dir=tmp_path) as group:
        web = group.start("web", PORT="8801")     # the Procfile's `web` line, via sh
        worker = group.start("deliveries")
        worker.wait_ready()
        worker.kill()                               # SIGKILL: a machine that died
        group.start("deliveries")                   # its replacement
    # every process still running is stopped (SIGTERM, then SIGKILL) on the way out

Each process runs the Procfile's command line as honcho does (`sh -c` in a new session,
HONCHO_PROCESS_NAME set), so these tests also show the Procfile runs. Its output goes
to a file; `describe()` gives the tail of every log for a failure message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parents[2]
PROCFILE = BASE_DIR / "Procfile"
# A Procfile line as honcho (and foreman) read it; any other line is a comment.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def procfile() -> dict[str, str]:
    """Process type -> command line."""
    lines = (PROCFILE_LINE.match(line) for line in PROCFILE.read_text().splitlines())
    return {m.group(1): m.group(2) for m in lines if m}


def database_url(settings_dict: dict[str, Any]) -> str:
    """A postgres:// URL of the database Django is connected to (the test database)."""
    db = settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    killed: bool = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        """A web process answers /healthz; a worker logged `ready.`; beat `Starting`."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        if self.port is not None:
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=2) as answer:  # noqa: S310 - loopback
                    return bool(answer.status == 200)
            except OSError:
                return False
        log = self.log()
        return " ready." in log or "beat: Starting" in log

    def kill(self) -> None:
        """SIGKILL the process and its children (gunicorn's workers): nothing cleans up."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.killed = True

    def terminate(self) -> None:
        """SIGTERM: a warm shutdown (running tasks finish, gunicorn ends its requests)."""
        if self.running():
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        """Wait for the process to end; SIGKILL it once `timeout` has passed."""
        try:
            self.popen.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class ProcessGroup:
    """Processes started from the Procfile with one environment; all stopped on exit."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def __enter__(self) -> ProcessGroup:
        self.lines = procfile()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, kind: str, *, port: int | None = None, **env: str) -> Process:
        number = sum(1 for p in self.processes if p.name.startswith(f"{kind}.")) + 1
        name = f"{kind}.{number}"
        process_env = {**self.env, "HONCHO_PROCESS_NAME": name, **env}
        if port is not None:
            process_env["HERALD_BIND"] = f"127.0.0.1:{port}"
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(  # noqa: S602 - the Procfile's line, as honcho runs it
                self.lines[kind], shell=True, env=process_env, cwd=BASE_DIR, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        process = Process(name, popen, log_path, port)
        self.processes.append(process)
        return process

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every process at once, SIGKILL what is left after `timeout`."""
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.wait_stopped(deadline - time.monotonic())

    def describe(self, lines: int = 25) -> str:
        """The last lines of every process's log (for a failure message)."""
        parts = []
        for p in self.processes:
            state = "killed" if p.killed else ("running" if p.running() else "exited")
            tail = "\n".join(p.log().splitlines()[-lines:])
            parts.append(f"--- {p.name} ({state}) ---\n{tail}")
        return "\n".join(parts)


def topology_env(
    *, database_url: str, broker_url: str, key_prefix: str, var_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment every process of a test deployment shares: one database, one
    Redis (with this run's key prefix), loopback-only outbound calls, rate limits off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CELERY_", "HERALD_", "DJANGO_", "PYTEST_"))
        and key not in {"DATABASE_URL", "PORT", "WEB_CONCURRENCY"}
    }
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "HERALD_BROKER_KEY_PREFIX": key_prefix,
        "SECRET_KEY": "topology-test-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "HERALD_VAR_DIR": str(var_dir),
        "HERALD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HERALD_OUTBOUND_ONLY_NETWORKS": "127.0.0.0/8",
        "HERALD_RATE_LIMIT_INGEST": "0",
        "HERALD_RATE_LIMIT_API": "0",
        "HERALD_RATE_LIMIT_AUTH_FAILURES": "0",
        # INFO: a worker's `ready.` and beat's `Starting` (what wait_ready looks for).
        "LOG_LEVEL": "INFO",
        **extra,
    }


def free_ports(count: int) -> Iterator[int]:
    """Ports the kernel says are free now (bind to 0), on loopback."""
    import socket

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        ports = [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
    yield from ports
