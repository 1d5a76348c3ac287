"""The suppression list (identifiers whose events Herald refuses and never re-creates),
privacy requests (their audit records) and the documents of exports."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from project.ids import PUBLIC_ID_LENGTH, new_public_id


class SuppressedIdentifier(models.Model):
    """One identifier of a suppressed person, as a keyed hash (customers.privacy.hashing).

    Ingest hashes the identifiers an event names and refuses the event when one is here;
    `unsuppress` deletes the rows of its request.
    """

    kind = models.CharField(max_length=16)  # external_id | anonymous_id | email
    digest = models.CharField(max_length=64)
    # The privacy request that suppressed it (its public id).
    request_id = models.CharField(max_length=26, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Ingest's lookup "is any of these identifiers suppressed?", and one row each.
            models.UniqueConstraint(fields=["kind", "digest"], name="suppressed_identifier_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.digest[:12]}…"


class PrivacyRequest(models.Model):
    """One privacy request (delete, suppress, unsuppress, export) and, once finished, its
    audit record: what was asked, by whom, when, and how many rows it touched.

    The identifier is kept as a keyed hash (customers.privacy.hashing) from the start.
    While the request waits or runs, the worker needs the clear value to find the
    person, so it is kept in `identifier_value` too; the transaction that finishes the
    request (done or failed) blanks it, so a finished request holds nothing in clear.

    The row is the source of truth for the background work: a request is due while it
    is `pending`, or `running` with its claim lapsed (`locked_until` past: the worker
    died), whatever happened to the message meant to run it.
    """

    class Type(models.TextChoices):
        DELETE = "delete"
        SUPPRESS = "suppress"
        UNSUPPRESS = "unsuppress"
        EXPORT = "export"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class IdentifierKind(models.TextChoices):
        CUSTOMER_ID = "customer_id"
        EXTERNAL_ID = "external_id"
        EMAIL = "email"
        ANONYMOUS_ID = "anonymous_id"

    id = models.CharField(
        primary_key=True, max_length=PUBLIC_ID_LENGTH, default=new_public_id, editable=False
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    identifier_kind = models.CharField(max_length=16, choices=IdentifierKind.choices)
    identifier_digest = models.CharField(max_length=64)
    # The clear identifier, only until the request finishes (see the class docstring).
    identifier_value = models.CharField(max_length=255, blank=True, default="")
    # Who filed it (project.audit's actor: an API client or an admin user).
    actor_kind = models.CharField(max_length=16, blank=True, default="")
    actor_id = models.CharField(max_length=64, blank=True, default="")
    actor_name = models.CharField(max_length=150, blank=True, default="")
    # Rows touched per kind ("customers", "events", …), set when done.
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # The running worker's claim; a lapsed one lets another worker take the request over.
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Export requests: until when the document can be downloaded (then it is deleted).
    export_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # GET /privacy-requests (newest first) and the admin list.
            models.Index(fields=["created_at", "id"], name="privacyrequest_created_idx"),
            # The sweeper: requests not finished (few: they finish within seconds).
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=["pending", "running"]),
                name="privacyrequest_open_idx",
            ),
            # Unsuppress: the suppress requests of one identifier.
            models.Index(
                fields=["identifier_kind", "identifier_digest"],
                name="privacyrequest_identifier_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.identifier_kind}:{self.identifier_digest[:12]}… ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class PrivacyExport(models.Model):
    """The document an export request made: everything Herald holds about the person.

    A row of its own, not a column of the request: the request is the audit record and
    holds no personal data; this row does, and is deleted when it expires
    (HERALD_PRIVACY_EXPORT_DAYS) by the `privacy.exports_expire` job. The document itself
    is its parts (PrivacyExportPart), written and served one at a time.
    """

    request = models.OneToOneField(
        PrivacyRequest, on_delete=models.CASCADE, primary_key=True, related_name="export"
    )
    # The document's length in bytes (the sum of its parts').
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The expiry job: documents past their time.
            models.Index(fields=["expires_at"], name="privacyexport_expires_idx"),
        ]

    def __str__(self) -> str:
        return f"export of {self.request_id}"


class PrivacyExportPart(models.Model):
    """One piece of an export document, in order: the document is the concatenation of
    its parts' bytes. An export is written a part at a time and downloaded the same way,
    so a person with millions of events is exported and served in constant memory, on
    any machine (the database holds it: no shared file storage needed)."""

    export = models.ForeignKey(PrivacyExport, on_delete=models.CASCADE, related_name="parts")
    position = models.PositiveIntegerField()
    # UTF-8 JSON text, as served (bytes: no re-encoding on download).
    data = models.BinaryField()

    class Meta:
        constraints = [
            # The download reads an export's parts in order.
            models.UniqueConstraint(
                fields=["export", "position"], name="privacyexportpart_position_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"part {self.position} of the export of {self.export_id}"
