"""The run is on the database DATABASE_URL names (scripts/test runs this package twice)."""

from __future__ import annotations

import os

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_tests_run_on_the_database_that_database_url_names():
    scheme = os.environ.get("DATABASE_URL", "sqlite://").split(":", 1)[0]
    expected = "sqlite" if scheme == "sqlite" else "postgresql"

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")

    assert connection.vendor == expected
