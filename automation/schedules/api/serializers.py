"""Request bodies (msgspec, strict) and response shapes of the schedules API (seed 003)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from rest_framework import serializers

from automation.schedules.models import Schedule, ScheduleRun

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Interval = Annotated[str, msgspec.Meta(max_length=200)]
Zone = Annotated[str, msgspec.Meta(max_length=64)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ScheduleFieldsIn(msgspec.Struct, forbid_unknown_fields=True):
    """The `schedule` object of POST /schedules. Naive dates are UTC (as the seed says);
    every date is converted to UTC, or refused, where bodies are decoded (project.api.body)."""

    owner: Email
    end_date: datetime
    interval: Interval
    callback_url: Url
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: list[Tag] = msgspec.field(default_factory=list)
    timezone: Zone | None = None


class ScheduleCreateIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of POST /schedules."""

    schedule: ScheduleFieldsIn


class SchedulePatchFieldsIn(msgspec.Struct, forbid_unknown_fields=True):
    """The `schedule` object of PATCH /schedules/{id}: any subset of the fields."""

    end_date: datetime | msgspec.UnsetType = msgspec.UNSET
    interval: Interval | msgspec.UnsetType = msgspec.UNSET
    timezone: Zone | msgspec.UnsetType | None = msgspec.UNSET
    callback_url: Url | msgspec.UnsetType = msgspec.UNSET
    context: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    tags: list[Tag] | msgspec.UnsetType = msgspec.UNSET


class SchedulePatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of PATCH /schedules/{id}."""

    schedule: SchedulePatchFieldsIn


class ContextFilterIn(msgspec.Struct, forbid_unknown_fields=True):
    """Seed 003's ContextRequest (`isArray` as in the seed; `is_array` also accepted)."""

    path: Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]
    value: str | int | float
    type: Literal["Number", "String"]
    isArray: bool = False  # the seed's name
    is_array: bool = False


class ScheduleQueryIn(msgspec.Struct, forbid_unknown_fields=True):
    """The JSON-encoded `query` parameter of GET /schedules."""

    owner: list[str] = msgspec.field(default_factory=list)
    tags: list[str] = msgspec.field(default_factory=list)
    context: list[ContextFilterIn] = msgspec.field(default_factory=list)


class ScheduleSerializer(serializers.ModelSerializer):
    schedule_id = serializers.CharField(source="id")
    timezone = serializers.SerializerMethodField()
    context = serializers.JSONField()  # type: ignore[assignment]  # DRF stubs: Field.context
    tags = serializers.ListField(child=serializers.CharField())
    interval_description = serializers.CharField(help_text="The interval in words.")

    class Meta:
        model = Schedule
        fields = [
            "schedule_id",
            "status",
            "created_date",
            "owner",
            "end_date",
            "interval",
            "interval_description",
            "timezone",
            "callback_url",
            "context",
            "tags",
            "next_run_at",
            "last_run_at",
        ]
        read_only_fields = fields

    def get_timezone(self, schedule: Schedule) -> str | None:
        return schedule.timezone or None


class ScheduleCreatedSerializer(ScheduleSerializer):
    """The 201 answer: the schedule plus the secret its callbacks are signed with."""

    signing_secret = serializers.CharField(
        source="endpoint.secret",
        help_text="whsec_… Standard Webhooks secret to verify callbacks; shown only here.",
    )

    class Meta(ScheduleSerializer.Meta):
        fields = [*ScheduleSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields


class ScheduleRunSerializer(serializers.ModelSerializer):
    run_id = serializers.IntegerField(source="id")
    delivery_id = serializers.CharField(allow_null=True)
    # The delivery's outcome; null when the delivery was removed.
    delivery_status = serializers.CharField(
        source="delivery.status", allow_null=True, help_text="pending, succeeded, failed, …"
    )
    attempt_count = serializers.IntegerField(source="delivery.attempt_count", allow_null=True)
    last_status_code = serializers.IntegerField(source="delivery.last_status_code", allow_null=True)
    last_error = serializers.CharField(source="delivery.last_error", allow_null=True)

    class Meta:
        model = ScheduleRun
        fields = [
            "run_id",
            "scheduled_for",
            "started_at",
            "delivery_id",
            "delivery_status",
            "attempt_count",
            "last_status_code",
            "last_error",
        ]
        read_only_fields = fields


class PreviewSerializer(serializers.Serializer):
    interval = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    interval_description = serializers.CharField()
    next_runs = serializers.ListField(child=serializers.DateTimeField())
