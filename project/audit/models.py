"""One row per configuration change or secret shown."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """Who did what to which object, when, with the object's state before and after.

    The actor and the object are plain text, not foreign keys: the audit trail
    sits below every app (it cannot import them) and must outlive what it
    describes (a deleted webhook, a revoked key, a removed admin user).
    """

    class ActorKind(models.TextChoices):
        API_CLIENT = "api_client"
        ADMIN_USER = "admin_user"
        SYSTEM = "system"  # management commands, periodic jobs, the shell

    class Action(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"
        ACTIVATED = "activated"
        DEACTIVATED = "deactivated"
        PAUSED = "paused"
        RESUMED = "resumed"
        DISABLED = "disabled"
        PINGED = "pinged"
        REVOKED = "revoked"
        # An action's name, not a secret (ruff's S105 looks for "secret" in names).
        SECRET_SHOWN = "secret_shown"  # noqa: S105
        SECRET_ROTATED = "secret_rotated"  # noqa: S105

    at = models.DateTimeField(default=timezone.now)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True, default="")
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        ordering = ["-at", "-id"]
        indexes = [
            # GET /audit-log and the admin list: newest first, by time range.
            models.Index(fields=["at", "id"], name="audit_at_idx"),
            # GET /audit-log?object_type=&object_id=: one object's history.
            models.Index(fields=["object_type", "object_id", "at"], name="audit_object_idx"),
            # GET /audit-log?actor= and the admin's search: what one client or user did
            # (by id or by name).
            models.Index(fields=["actor_id", "at"], name="audit_actor_idx"),
            models.Index(fields=["actor_name", "at"], name="audit_actor_name_idx"),
        ]

    def __str__(self) -> str:
        actor = self.actor_name or self.actor_kind
        return f"{actor} {self.action} {self.object_type} {self.object_id}"
