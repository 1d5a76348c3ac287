"""Reads of privacy requests and their export documents."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from customers.privacy.models import PrivacyExport, PrivacyRequest
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


def privacy_export_document(*, request_id: str, now: datetime) -> bytes:
    """The export document of a finished export request; a 404 for any other request,
    one not finished yet, and one whose document expired (and was or will be deleted)."""
    request = privacy_request_get(request_id=request_id)
    if request.type != PrivacyRequest.Type.EXPORT:
        raise NotFoundError(f"Privacy request '{request_id}' is not an export.")
    if request.status != PrivacyRequest.Status.DONE:
        raise NotFoundError(f"The export of privacy request '{request_id}' is not ready yet.")
    export = PrivacyExport.objects.filter(request_id=request_id, expires_at__gt=now).first()
    if export is None:
        raise NotFoundError(f"The export of privacy request '{request_id}' has expired.")
    return bytes(export.document)
