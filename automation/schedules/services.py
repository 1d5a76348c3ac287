"""Services of scheduled callbacks (seed 003): create, change, pause, resume, delete, run now.

Every state change of a schedule goes through here (API views, admin actions
and the scheduler's "run now" all call these). A schedule owns one Endpoint of
kind "schedule": its callbacks are deliveries of the outbound engine, so they
are URL-guarded, signed (Standard Webhooks), retried and logged like webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from automation.schedules import cron, scheduler
from automation.schedules.models import Schedule, ScheduleRun
from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_create, endpoint_delete, endpoint_update
from project.audit.services import audit_record, audit_snapshot
from project.cascade import cascade_delete_object
from project.datetimes import utc_datetime
from project.errors import ConflictError, ValidationFailed

PREVIEW_RUNS = 5
MAX_TAGS = 50
MAX_TAG_LENGTH = 100

# Fields PATCH may change (seed 003); `timezone` is Herald's addition.
UPDATABLE_FIELDS = ("end_date", "interval", "timezone", "callback_url", "context", "tags")


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid input: {field}: {message}", details={field: [message]})


def interval_parse(*, interval: str, tz_name: str = "") -> tuple[cron.Cron, Any]:
    """Parse a cron interval and optional zone; reject impossible or too-frequent ones (400)."""
    try:
        parsed = cron.parse(interval)
    except cron.CronError as exc:
        raise _invalid("interval", str(exc)) from None
    try:
        zone = cron.zone(tz_name) if tz_name else None
    except cron.CronError as exc:
        raise _invalid("timezone", str(exc)) from None
    try:
        gap = cron.min_gap_seconds(parsed)
    except cron.CronError as exc:  # never matches (cronsim found nothing in ~50 years)
        raise _invalid("interval", str(exc)) from None
    minimum = settings.HERALD_SCHEDULE_MIN_INTERVAL_SECONDS
    if gap < minimum:
        raise _invalid(
            "interval",
            f"Runs {gap:g} s apart; the minimum interval is {minimum} s "
            "(HERALD_SCHEDULE_MIN_INTERVAL_SECONDS).",
        )
    return parsed, zone


def schedule_preview(
    *, interval: str, tz_name: str = "", now: datetime | None = None
) -> dict[str, Any]:
    """The next PREVIEW_RUNS run times and the human description of an interval."""
    parsed, zone = interval_parse(interval=interval, tz_name=tz_name)
    runs = parsed.upcoming(now or timezone.now(), PREVIEW_RUNS, zone)
    return {
        "interval": interval,
        "timezone": tz_name or None,
        "interval_description": parsed.describe(),
        "next_runs": runs,
    }


def _check_owner(owner: str) -> None:
    try:
        validate_email(owner)
    except DjangoValidationError:
        raise _invalid("owner", f"'{owner}' is not an email address.") from None


def _check_end_date(end_date: datetime, now: datetime) -> datetime:
    """The end date in UTC; refused when it is past or has no UTC form PostgreSQL and
    Python can both read back (such a row would break every list showing it)."""
    try:
        end_date = utc_datetime(end_date)
    except ValueError as exc:
        raise _invalid("end_date", str(exc)) from None
    if end_date <= now:
        raise _invalid("end_date", "Must be in the future.")
    return end_date


def _check_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise _invalid("tags", f"At most {MAX_TAGS} tags.")
    for tag in tags:
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise _invalid("tags", f"Each tag must be 1-{MAX_TAG_LENGTH} characters.")
    return list(dict.fromkeys(tags))


def _first_run(schedule: Schedule, now: datetime) -> datetime:
    run = schedule.next_run_after(now)
    if run is None:
        raise _invalid(
            "end_date",
            f"The interval's next run ({schedule.cron.next_after(now, schedule.zone).isoformat()}) "
            "is after end_date: the schedule would never run.",
        )
    return run


AUDIT_TYPE = "schedule"


def _audit(schedule: Schedule, action: str, before: dict[str, Any] | None) -> None:
    after = None if action == "deleted" else audit_snapshot(schedule)
    audit_record(action=action, obj_type=AUDIT_TYPE, obj_id=schedule.pk, before=before, after=after)


def schedule_create(
    *,
    owner: str,
    end_date: datetime,
    interval: str,
    callback_url: str,
    context: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    tz_name: str = "",
    now: datetime | None = None,
) -> Schedule:
    """Create a schedule (INACTIVE until its callback is first called) and its signed endpoint."""
    now = now or timezone.now()
    _check_owner(owner)
    end_date = _check_end_date(end_date, now)
    interval_parse(interval=interval, tz_name=tz_name)
    schedule = Schedule(
        owner=owner,
        end_date=end_date,
        interval=interval,
        timezone=tz_name,
        callback_url=callback_url,
        context=context or {},
        tags=_check_tags(tags or []),
        created_date=now,
    )
    schedule.next_run_at = _first_run(schedule, now)
    with transaction.atomic():
        try:
            endpoint, _ = endpoint_create(
                url=callback_url,
                kind=Endpoint.Kind.SCHEDULE,
                description=f"Scheduled callback {schedule.id}",
            )
        except ValidationFailed as exc:
            raise _invalid("callback_url", exc.message) from None
        schedule.endpoint = endpoint
        schedule.save(force_insert=True)
        _audit(schedule, "created", None)
    return schedule


def _locked(schedule: Schedule) -> Schedule:
    """Re-read the row under a lock, so a scheduler tick and a change never interleave."""
    return (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .get(pk=schedule.pk)
    )


def schedule_update(
    *, schedule: Schedule, fields: dict[str, Any], now: datetime | None = None
) -> Schedule:
    """PATCH: change any of UPDATABLE_FIELDS, validated as on create; next run recomputed."""
    now = now or timezone.now()
    unknown = sorted(set(fields) - set(UPDATABLE_FIELDS))
    if unknown:
        raise _invalid(unknown[0], "This field cannot be changed.")
    with transaction.atomic():
        schedule = _locked(schedule)
        before = audit_snapshot(schedule)
        if schedule.status == Schedule.Status.FINISHED:
            raise ConflictError(f"Schedule '{schedule.id}' is finished and cannot be changed.")
        if "end_date" in fields:
            schedule.end_date = _check_end_date(fields["end_date"], now)
        if "interval" in fields or "timezone" in fields:
            schedule.interval = fields.get("interval", schedule.interval)
            schedule.timezone = fields.get("timezone", schedule.timezone) or ""
            interval_parse(interval=schedule.interval, tz_name=schedule.timezone)
        if "context" in fields:
            schedule.context = fields["context"]
        if "tags" in fields:
            schedule.tags = _check_tags(fields["tags"])
        if "callback_url" in fields and fields["callback_url"] != schedule.callback_url:
            assert schedule.endpoint is not None  # every schedule is created with one
            try:
                endpoint_update(endpoint=schedule.endpoint, fields={"url": fields["callback_url"]})
            except ValidationFailed as exc:
                raise _invalid("callback_url", exc.message) from None
            schedule.callback_url = fields["callback_url"]
        if schedule.status in Schedule.RUNNABLE:
            schedule.next_run_at = _first_run(schedule, now)
        schedule.save()
        _audit(schedule, "updated", before)
    return schedule


def schedule_delete(*, schedule: Schedule) -> Schedule:
    """Delete a schedule, its runs, its endpoint and pending callbacks; return what it was."""
    with transaction.atomic():
        schedule = _locked(schedule)
        endpoint = schedule.endpoint
        _audit(schedule, "deleted", audit_snapshot(schedule))
        deleted = Schedule(
            **{f.attname: getattr(schedule, f.attname) for f in Schedule._meta.concrete_fields}
        )
        # Set-based (project.cascade): its runs, however many, in one statement.
        cascade_delete_object(schedule)
        if endpoint is not None:
            # Its pending deliveries go with it: no callback is sent after the delete.
            endpoint_delete(endpoint=endpoint)
    return deleted


def schedule_pause(*, schedule: Schedule) -> Schedule:
    """Stop firing until resumed; pausing a paused or finished schedule is a 409."""
    with transaction.atomic():
        schedule = _locked(schedule)
        if schedule.status not in Schedule.RUNNABLE:
            raise ConflictError(
                f"Schedule '{schedule.id}' is {schedule.status} and cannot be paused."
            )
        before = audit_snapshot(schedule)
        schedule.status = Schedule.Status.PAUSED
        schedule.next_run_at = None
        schedule.save(update_fields=["status", "next_run_at", "updated_at"])
        _audit(schedule, "paused", before)
    return schedule


def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    """Fire again from now on: the next run is computed from now, missed runs are not sent."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(schedule)
        if schedule.status != Schedule.Status.PAUSED:
            raise ConflictError(
                f"Schedule '{schedule.id}' is {schedule.status}; only a PAUSED one can be resumed."
            )
        next_run = schedule.next_run_after(now)
        if next_run is None:
            raise ConflictError(
                f"Schedule '{schedule.id}' has no run left before its end date "
                f"({schedule.end_date.isoformat()}); it cannot be resumed."
            )
        before = audit_snapshot(schedule)
        # PAUSED hid which it was; a callback in flight may have gone out while paused.
        schedule.status = (
            Schedule.Status.ACTIVE if schedule.first_called_at else Schedule.Status.INACTIVE
        )
        schedule.next_run_at = next_run
        schedule.save(update_fields=["status", "next_run_at", "updated_at"])
        _audit(schedule, "resumed", before)
    return schedule


def schedule_run_now(*, schedule: Schedule, now: datetime | None = None) -> ScheduleRun:
    """Send one extra callback now (admin action); the regular next run is unchanged.

    Fired by the scheduler's own path (scheduler.fire_claimed), on the locked row."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(schedule)
        if schedule.status == Schedule.Status.FINISHED or schedule.endpoint_id is None:
            raise ConflictError(f"Schedule '{schedule.id}' is finished.")
        fired = scheduler.fire_claimed([scheduler.claimed_row(schedule)], now, run_now=True)
        if not fired:
            raise ConflictError(f"Schedule '{schedule.id}' already has a run at {now.isoformat()}.")
        # The status stays: it turns ACTIVE when the callback is called (schedule_mark_called).
    return ScheduleRun.objects.get(schedule=schedule, scheduled_for=now)


def schedule_mark_called(*, endpoint_id: str) -> bool:
    """Seed 003: a schedule is ACTIVE once its callback has been called at least once.

    The sender calls this after every attempt of a schedule's callback that went out
    (any response, or a network error; not one the outbound guard refused), outside any
    lock of the delivery. One conditional UPDATE on the first call only: it records
    `first_called_at` and turns INACTIVE into ACTIVE (a PAUSED or FINISHED schedule
    keeps its status, and resume reads `first_called_at`). Of many workers calling at
    once exactly one changes the row; later calls match nothing. True if this call
    recorded the first call.
    """
    now = timezone.now()
    return bool(
        Schedule.objects.filter(endpoint_id=endpoint_id, first_called_at__isnull=True).update(
            first_called_at=now,
            status=Case(
                When(status=Schedule.Status.INACTIVE, then=Value(Schedule.Status.ACTIVE)),
                default=F("status"),
            ),
            updated_at=now,
        )
    )
