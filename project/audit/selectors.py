"""Reading the audit trail."""

from __future__ import annotations

from django.db.models import QuerySet

from project.audit.models import AuditEntry

AUDIT_SORT_FIELDS = {"at": "at"}


def audit_entries() -> QuerySet[AuditEntry]:
    """Every entry; callers filter (actor, object, time) and order."""
    return AuditEntry.objects.all()


def audit_entries_of(*, object_type: str, object_id: str) -> QuerySet[AuditEntry]:
    """One object's history, newest first."""
    return AuditEntry.objects.filter(object_type=object_type, object_id=object_id).order_by(
        "-at", "-id"
    )
