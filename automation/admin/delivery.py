"""Admin for outbound delivery: endpoints and deliveries (attempts inline).

Actions call the services in automation.delivery (redeliver, disable), never
re-implement them. Lists avoid full-table COUNTs and FK filters over big tables.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from automation import delivery as services
from automation.models import Delivery, DeliveryAttempt, Endpoint
from project.errors import HeraldError


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2048, assume_scheme="https")

    class Meta:
        model = Endpoint
        fields = ("kind", "url", "description", "event_types", "active", "disabled_reason")

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        # The SSRF guard runs for admin edits too.
        try:
            services.endpoint_check_url(url)
        except HeraldError as exc:
            raise forms.ValidationError(exc.message) from None
        return url


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = (
        "url",
        "kind",
        "active",
        "disabled_reason",
        "last_success_at",
        "first_failure_at",
        "created_at",
    )
    list_filter = ("kind", "active")
    search_fields = ("=id", "url")
    filter_horizontal = ("event_types",)
    readonly_fields = (
        "id",
        "secret_hint",
        "previous_secret_expires_at",
        "disabled_at",
        "first_failure_at",
        "last_success_at",
        "created_at",
        "updated_at",
    )
    fields = (
        "id",
        "kind",
        "url",
        "description",
        "event_types",
        "active",
        "disabled_reason",
        *readonly_fields[1:],
    )
    actions = ("disable_endpoints", "send_test_ping")

    @admin.display(description="Signing secret")
    def secret_hint(self, obj: Endpoint) -> str:
        # Shown once by the API (creation, rotation); the admin only helps tell them apart.
        return f"{obj.secret[:10]}…" if obj.secret else "-"

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        if not change:
            obj.secret = services.new_secret()
        super().save_model(request, obj, form, change)

    @admin.action(description="Disable selected endpoints (fails their pending deliveries)")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset.filter(active=True):
            services.endpoint_disable(endpoint=endpoint, reason=f"Disabled by {request.user}.")
        self.message_user(request, "Disabled.", messages.SUCCESS)

    @admin.action(description="Send a test ping")
    def send_test_ping(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_ping(endpoint=endpoint)
        self.message_user(request, "Test pings queued.", messages.SUCCESS)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "started_at",
        "duration_ms",
        "status_code",
        "outcome",
        "error",
        "response_excerpt",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "endpoint",
        "event_id",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status",)
    list_select_related = ("endpoint",)
    # Exact-match lookups use the primary key and the (event, status) / (endpoint, id) indexes.
    search_fields = ("=id", "=message_id", "=event__id", "=endpoint__id")
    show_full_result_count = False  # no COUNT(*) over millions of deliveries
    raw_id_fields = ("endpoint", "event")
    inlines = (DeliveryAttemptInline,)
    actions = ("redeliver",)
    readonly_fields = (
        "id",
        "endpoint",
        "event",
        "message_id",
        "payload",
        "status",
        "attempt_count",
        "retry_step",
        "next_attempt_at",
        "queued_until",
        "locked_until",
        "give_up_at",
        "created_at",
        "completed_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Redeliver (same webhook-id, retry schedule restarts)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        done = 0
        for delivery in queryset:
            try:
                services.delivery_redeliver(delivery=delivery)
                done += 1
            except HeraldError as exc:
                self.message_user(request, f"{delivery.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} delivery(ies) queued again.", messages.SUCCESS)
