"""Log lines: one JSON object per line, or plain text, both naming the request.

settings.LOGGING picks the shape (HERALD_LOG_FORMAT, docs/operations.md): its
handler carries `RequestIdFilter`, which gives every record the id of the request
or task it was logged for (project.requestid), and the "json" formatter is
python-json-logger's, writing `timestamp`, `level`, `logger`, `message`,
`request_id` and whatever `extra` a call passed.
"""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from project.requestid import request_id_current

# The record's attributes every JSON line starts with, under the names they get.
JSON_FIELDS = ("levelname", "name", "message", "request_id")
JSON_RENAMED = {"levelname": "level", "name": "logger"}


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record logged for a request or task (the
    formatters fill in their default for the others)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_current()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """The plain-text line: `time LEVEL logger [request id or -] message`."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            defaults={"request_id": "-"},
        )


def json_formatter(**_: Any) -> JsonFormatter:
    """The JSON line (a factory: dictConfig's "()" key); request_id null outside one."""
    return JsonFormatter(
        list(JSON_FIELDS),
        rename_fields=JSON_RENAMED,
        timestamp=True,
        validate=False,
        defaults={"request_id": None},
    )


def celery_keep_logging(**_: Any) -> None:
    """Celery's setup_logging receiver: Django's LOGGING already configured this
    process, so a worker writes the same lines as the web processes (a connected
    receiver is what stops Celery from replacing the root logger's handlers)."""
