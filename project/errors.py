"""Domain errors raised by services; the API's exception handler renders them.

Services must not know about HTTP frameworks, but each error carries the status
an API would answer with, so the mapping lives in one place (here) rather than
in every view.
"""

from __future__ import annotations

from typing import Any


class HeraldError(Exception):
    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.extra = extra or {}


class ValidationFailed(HeraldError):
    status_code = 400


class ForbiddenError(HeraldError):
    """A request the caller may not make whatever its input: e.g. an event for a
    suppressed person (events_app.ingestion)."""

    status_code = 403


class NotFoundError(HeraldError):
    status_code = 404


class ConflictError(HeraldError):
    status_code = 409
