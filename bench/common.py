"""What every benchmark needs before Django starts: a scratch PostgreSQL database."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import psycopg


def ensure_database(url: str) -> None:
    """Create the database `url` names if it does not exist (a fresh machine has none)."""
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"Created database {name}.")


def scratch_database(name: str) -> str:
    """DATABASE_URL, by default PostgreSQL on 127.0.0.1 database `name`; created if
    missing. Refuses anything but PostgreSQL (the benchmarks truncate tables)."""
    url = os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{name}")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("Set DATABASE_URL to a scratch PostgreSQL database (it is truncated).")
    ensure_database(url)
    return url
