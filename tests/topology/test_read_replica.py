"""The read replica router (project/dbrouters.py): which reads go to the replica.

The `replica` alias is a second connection to the same test database (what Django's TEST
MIRROR setting makes of HERALD_READ_REPLICA_URL's alias in a test run), so the data is
the same and each query shows on the connection that ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.utils import load_backend
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver
from rest_framework.test import APIClient

from customers.models import Customer
from events_app.models import ApiClient
from project.dbrouters import LIST_VIEWS, REPLICA, replica_reads
from tests.admin_support import marketer_client
from tests.conftest import API
from tests.factories import CustomerFactory
from tests.topology.processes import BASE_DIR

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMERS_TABLE = f'"{Customer._meta.db_table}"'


@pytest.fixture
def replica(settings: Any) -> Iterator[None]:
    """HERALD_READ_REPLICA_URL's effect, with the replica a mirror of the test database."""
    default = connections["default"].settings_dict
    mirror = {**default, "TEST": {**default["TEST"], "MIRROR": "default"}}
    # A connection of this thread only (the test client serves requests on it), so the
    # test database set up for the session needs no `replica` alias.
    setattr(
        connections._connections,
        REPLICA,
        load_backend(mirror["ENGINE"]).DatabaseWrapper(mirror, REPLICA),
    )
    settings.DATABASE_ROUTERS = ["project.dbrouters.ReadReplicaRouter"]
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("axes.middleware.AxesMiddleware"),
        "project.dbrouters.ReplicaReadsMiddleware",
    )
    settings.MIDDLEWARE = middleware
    try:
        yield
    finally:
        connections[REPLICA].close()
        delattr(connections._connections, REPLICA)


class Queries:
    """The SQL each alias ran inside the block."""

    def __enter__(self) -> Queries:
        self.captures = {
            alias: CaptureQueriesContext(connections[alias]) for alias in ("default", REPLICA)
        }
        for capture in self.captures.values():
            capture.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for capture in self.captures.values():
            capture.__exit__(*exc)

    def on(self, alias: str, table: str = CUSTOMERS_TABLE) -> list[str]:
        return [q["sql"] for q in self.captures[alias].captured_queries if table in q["sql"]]


def test_an_api_list_is_read_from_the_replica(replica: None, api: APIClient) -> None:
    CustomerFactory.create_batch(3)
    with Queries() as queries:
        response = api.get(f"{API}/customers")
    assert response.status_code == 200
    assert len(response.json()["data"]["customers"]) == 3
    assert queries.on(REPLICA)
    assert queries.on("default") == []
    # The API key was checked on the primary: a revoked key must stop working at once.
    assert queries.on("default", f'"{ApiClient._meta.db_table}"')
    assert queries.on(REPLICA, f'"{ApiClient._meta.db_table}"') == []


def test_an_admin_change_list_is_read_from_the_replica(replica: None) -> None:
    CustomerFactory.create_batch(2)
    marketer = marketer_client(["customers.view_customer"])
    with Queries() as queries:
        response = marketer.get("/admin/customers/customer/")
    assert response.status_code == 200
    assert queries.on(REPLICA)
    assert queries.on("default") == []


def test_a_detail_read_and_a_write_go_to_the_primary(replica: None, api: APIClient) -> None:
    customer = CustomerFactory()
    with Queries() as queries:
        detail = api.get(f"{API}/customers/{customer.pk}")
        created = api.post(
            f"{API}/customers", {"customer": {"external_id": "new-1"}}, format="json"
        )
    assert (detail.status_code, created.status_code) == (200, 201)
    assert queries.on("default")
    assert queries.captures[REPLICA].captured_queries == []


def test_reads_inside_a_transaction_go_to_the_primary(replica: None) -> None:
    CustomerFactory()
    with replica_reads(), Queries() as queries:
        with transaction.atomic():
            assert Customer.objects.count() == 1
        inside = len(queries.on("default"))
        assert Customer.objects.count() == 1
    assert (inside, len(queries.on("default")), len(queries.on(REPLICA))) == (1, 1, 1)


def test_reads_after_a_write_of_the_same_request_go_to_the_primary(replica: None) -> None:
    with replica_reads(), Queries() as queries:
        assert Customer.objects.count() == 0
        CustomerFactory()
        assert Customer.objects.count() == 1
    assert len(queries.on(REPLICA)) == 1  # only the read before the write
    assert [q for q in queries.on("default") if "COUNT" in q]


def test_without_a_list_request_everything_goes_to_the_primary(replica: None) -> None:
    CustomerFactory()
    with Queries() as queries:
        assert Customer.objects.count() == 1
    assert queries.captures[REPLICA].captured_queries == []


def test_the_replica_url_adds_a_mirrored_replica_alias_the_router_and_the_middleware() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://herald@primary.internal:5432/herald",
        "HERALD_READ_REPLICA_URL": "postgres://reader:pw@replica.internal:5433/herald",
    }
    script = (
        "import json; import project.settings as s; "
        "r = s.DATABASES['replica']; print(json.dumps({'host': r['HOST'], 'port': r['PORT'], "
        "'user': r['USER'], 'engine': r['ENGINE'], 'mirror': r['TEST']['MIRROR'], "
        "'same_engine': r['ENGINE'] == s.DATABASES['default']['ENGINE'], "
        "'routers': s.DATABASE_ROUTERS, "
        "'middleware': 'project.dbrouters.ReplicaReadsMiddleware' in s.MIDDLEWARE}))"
    )
    result = subprocess.run(  # noqa: S603 - our own fixed command line
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "host": "replica.internal",
        "port": 5433,
        "user": "reader",
        "engine": "project.postgresql",
        "mirror": "default",
        "same_engine": True,
        "routers": ["project.dbrouters.ReadReplicaRouter"],
        "middleware": True,
    }


def test_every_list_view_name_is_a_url_of_the_api() -> None:
    names = set(get_resolver().reverse_dict)
    assert not LIST_VIEWS - names, "list views without a URL"
