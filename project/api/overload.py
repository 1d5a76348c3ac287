"""Overload: the database refuses a connection or the pool has none free -> 503.

PostgreSQL at max_connections ("too many clients"), a role at its connection limit,
a server starting up or shutting down, a connection that cannot be made, and
Django's psycopg pool timing out waiting for a free connection all reach the API
as django.db.OperationalError. They say "not now", not "this request is wrong":
the client should retry after a pause, so they are a 503 with Retry-After rather
than a 500 (project.api.errors turns the exception made here into the one shape).
Other OperationalErrors (a deadlock, a serialization failure) stay errors.
"""

from __future__ import annotations

import logging
import sqlite3

from django.db import OperationalError
from rest_framework import exceptions, status

logger = logging.getLogger(__name__)

# Seconds a client is asked to wait before it retries.
OVERLOAD_RETRY_AFTER = 5

# SQLSTATE classes and codes that mean "the server cannot take this connection now":
# 08 connection exception, 53 insufficient resources (53300 too_many_connections),
# 57P01-57P03 admin/crash shutdown, cannot_connect_now.
_OVERLOAD_SQLSTATE_PREFIXES = ("08", "53", "57P01", "57P02", "57P03")


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(detail=message)
        self.wait = OVERLOAD_RETRY_AFTER


def _is_overload(exc: OperationalError) -> bool:
    cause = exc.__cause__
    if cause is None:
        return False
    if type(cause).__name__ == "PoolTimeout":  # psycopg_pool, when the pool is configured
        return True
    if isinstance(cause, sqlite3.OperationalError):
        # The embedded default: a writer held the database longer than the timeout.
        return "database is locked" in str(cause)
    if not hasattr(cause, "sqlstate"):
        return False
    if cause.sqlstate is None:
        # psycopg: a connection attempt that failed, or a connection lost mid-request.
        return True
    return str(cause.sqlstate).startswith(_OVERLOAD_SQLSTATE_PREFIXES)


def overload_exception(exc: Exception) -> ServiceUnavailable | None:
    """The 503 to answer instead of `exc`, or None when `exc` is not an overload."""
    if not isinstance(exc, OperationalError) or not _is_overload(exc):
        return None
    logger.warning("Database unavailable, answered 503: %s", exc)
    return ServiceUnavailable(
        "The service is overloaded: the database cannot take this request now. "
        f"Retry after {OVERLOAD_RETRY_AFTER} s."
    )
