"""project.sql runs long statements with their placeholders numbered once."""

from __future__ import annotations

import pytest
from django.db import connection

from project.sql import _numbered, fetch_all, fetch_one

LONG_PADDING = "-- " + "x" * 5000 + "\n"  # past psycopg's 4096-character cache


def test_placeholders_are_numbered_and_a_doubled_percent_is_one() -> None:
    assert _numbered("SELECT %s, %s || '%%'") == "SELECT $1, $2 || '%'"


def test_a_statement_with_named_placeholders_is_left_to_psycopg() -> None:
    assert _numbered("SELECT %(a)s") is None


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the RawCursor path")
def test_a_long_statement_runs_with_its_parameters_and_percent_signs() -> None:
    rows = fetch_all(LONG_PADDING + "SELECT %s::int + %s::int, 'a%%b'", [1, 2])
    named = fetch_one(LONG_PADDING + "SELECT %(x)s::int", {"x": 7})

    assert rows == [(3, "a%b")]
    assert named == (7,)
