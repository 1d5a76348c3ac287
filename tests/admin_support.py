"""Helpers for admin tests: a marketer (staff, not superuser) and query inspection."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from project.admin.lists import EstimatedCountPaginator

MARKETER_PASSWORD = "marketer-pass-123"

# Django's changelist count (whole table, or every filtered row); capped
# counts are `SELECT COUNT(*) FROM (SELECT … LIMIT n) subquery` and do not match.
UNCAPPED_COUNT_RE = r'^SELECT COUNT\(\*\) AS "__count" FROM "{table}"'


def marketer_client(perms: Iterable[str], username: str = "marketer") -> Client:
    """A logged-in staff user holding exactly these `app_label.codename` permissions."""
    user = get_user_model().objects.create_user(
        username=username, password=MARKETER_PASSWORD, is_staff=True
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def uncapped_counts(queries: Iterable[str], table: str) -> list[str]:
    """The queries that count every matching row of `table` (what big lists must avoid)."""
    pattern = re.compile(UNCAPPED_COUNT_RE.format(table=table))
    return [sql for sql in queries if pattern.search(sql)]


def treat_as_big_table(table: str, monkeypatch: pytest.MonkeyPatch, exact_below: int = 5) -> None:
    """Make the planner estimate current and the paginator trust it above `exact_below` rows."""
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{table}"')
    monkeypatch.setattr(EstimatedCountPaginator, "exact_count_below", exact_below)


def get_with_queries(
    client: Client, url: str, params: dict[str, object] | None = None
) -> tuple[HttpResponse, list[str]]:
    """GET a page and return it with the SQL it ran."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    return response, [q["sql"] for q in queries.captured_queries]
