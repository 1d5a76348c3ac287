"""Reads of privacy requests and their export documents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db.models import QuerySet

from customers.privacy.models import PrivacyExport, PrivacyExportPart, PrivacyRequest
from project.errors import NotFoundError

# GET /privacy-requests?sort_field=… (ties broken by the id).
PRIVACY_REQUEST_SORT_FIELDS = {"created_at": "created_at"}


def privacy_request_list() -> QuerySet[PrivacyRequest]:
    return PrivacyRequest.objects.all()


def privacy_request_get(*, request_id: str) -> PrivacyRequest:
    request = PrivacyRequest.objects.filter(pk=request_id).first()
    if request is None:
        raise NotFoundError(f"Privacy request '{request_id}' not found.")
    return request


def privacy_export_get(*, request_id: str, now: datetime) -> PrivacyExport:
    """The export of a finished export request; a 404 for any other request, one not
    finished yet, and one whose document expired (and was or will be deleted)."""
    request = privacy_request_get(request_id=request_id)
    if request.type != PrivacyRequest.Type.EXPORT:
        raise NotFoundError(f"Privacy request '{request_id}' is not an export.")
    if request.status != PrivacyRequest.Status.DONE:
        raise NotFoundError(f"The export of privacy request '{request_id}' is not ready yet.")
    export = PrivacyExport.objects.filter(request_id=request_id, expires_at__gt=now).first()
    if export is None:
        raise NotFoundError(f"The export of privacy request '{request_id}' has expired.")
    return export


def privacy_export_chunks(*, export: PrivacyExport) -> Iterator[bytes]:
    """The export's document, a part at a time (one query each: the whole document is
    never in memory)."""
    part_ids = list(export.parts.order_by("position").values_list("pk", flat=True))
    for part_id in part_ids:
        data = PrivacyExportPart.objects.filter(pk=part_id).values_list("data", flat=True).first()
        if data is not None:
            yield bytes(data)
