"""Admin for the deliveries' log (attempts inline); the endpoints' is
automation.webhooks.admin.

Redelivering calls automation.webhooks.deliveries, never re-implements it. The
deliveries table holds one row per event and endpoint (millions): its list uses
BigTableAdmin (no full COUNT(*)), filters that map onto its indexes, an
exact-match search, and never lists endpoints or events in a filter sidebar.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from automation.webhooks.deliveries import delivery_redeliver
from automation.webhooks.models import Delivery, DeliveryAttempt, Endpoint
from project.admin.display import change_link, pretty_json
from project.admin.forms import WithoutSaveButtons
from project.admin.lists import BigTableAdmin, CreatedWithinByIdFilter, ParameterFilter
from project.errors import HeraldError


def deliveries_url(endpoint_id: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint_id, **params}.items())
    return reverse("admin:automation_delivery_changelist") + "?" + query


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


class EndpointFilter(ParameterFilter):
    """`?endpoint=<id>` from an endpoint's page: served by delivery_endpoint_idx (endpoint, id)."""

    title = "endpoint"
    parameter_name = "endpoint"
    field_name = "endpoint_id"

    def label(self, value: str) -> str:
        endpoint = Endpoint.objects.filter(pk=value).only("url").first()
        return Truncator(endpoint.url).chars(40) if endpoint else value


@admin.register(Delivery)
class DeliveryAdmin(WithoutSaveButtons, BigTableAdmin):
    list_display = (
        "id",
        "endpoint_link",
        "event_link",
        "status",
        "attempt_count",
        "last_status_code",
        "last_error_short",
        "next_attempt_at",
        "created_at",
    )
    # status: delivery_status_idx (status, id); created: a primary-key range;
    # endpoint: delivery_endpoint_idx (endpoint, id). Ordered by the time-ordered id.
    list_filter = ("status", CreatedWithinByIdFilter, EndpointFilter)
    list_select_related = ("endpoint",)
    ordering = ("-id",)
    sortable_by = ("id",)
    search_fields = ("=id", "=message_id", "=event__id", "=endpoint__id", "=customer__id")
    search_help_text = (
        "Exact delivery id, webhook-id (msg_…), event id, endpoint id or customer id."
    )
    inlines = (DeliveryAttemptInline,)
    actions = ("redeliver",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "endpoint_link",
                    "event_link",
                    "customer_link",
                    "message_id",
                    "status",
                )
            },
        ),
        (
            "Progress",
            {
                "fields": (
                    "attempt_count",
                    "last_attempt_at",
                    "last_status_code",
                    "last_error",
                    "next_attempt_at",
                    "give_up_at",
                    "created_at",
                    "completed_at",
                )
            },
        ),
        ("Payload", {"fields": ("payload_pretty",)}),
        (
            "Worker bookkeeping",
            {"fields": ("retry_step", "queued_until", "locked_until"), "classes": ("collapse",)},
        ),
    )
    # Every field is read-only: the change permission is what allows redelivering.
    readonly_fields = tuple(str(name) for _, section in fieldsets for name in section["fields"])

    def search_exact(self, queryset: QuerySet[Delivery], term: str) -> QuerySet[Delivery]:
        # Each arm is a btree lookup: pk, the unique message_id, delivery_event_idx
        # (event, status), delivery_endpoint_idx (endpoint, id) and
        # delivery_customer_idx (customer, id).
        return queryset.filter(
            Q(pk=term)
            | Q(message_id=term)
            | Q(event_id=term)
            | Q(endpoint_id=term)
            | Q(customer_id=term)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # The delivery log is a record; deleting an endpoint deletes its deliveries.
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    class Media:
        css = {"all": ("events_app/admin_inlines.css",)}  # no str() above each attempt row

    @admin.display(description="endpoint")
    def endpoint_link(self, obj: Delivery) -> SafeString:
        url = reverse("admin:automation_endpoint_change", args=[obj.endpoint_id])
        return format_html('<a href="{}">{}</a>', url, Truncator(obj.endpoint.url).chars(50))

    @admin.display(description="event")
    def event_link(self, obj: Delivery) -> SafeString:
        return change_link("admin:events_app_event_change", obj.event_id)

    @admin.display(description="customer")
    def customer_link(self, obj: Delivery) -> SafeString:
        return change_link("admin:customers_customer_change", obj.customer_id)

    @admin.display(description="last error")
    def last_error_short(self, obj: Delivery) -> str:
        return Truncator(obj.last_error).chars(60)

    @admin.display(description="payload")
    def payload_pretty(self, obj: Delivery) -> SafeString:
        return pretty_json(obj.payload)

    @admin.action(
        description="Redeliver (same webhook-id, retry schedule restarts)", permissions=["change"]
    )
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        done = 0
        for delivery in queryset:
            try:
                delivery_redeliver(delivery=delivery)
                done += 1
            except HeraldError as exc:
                self.message_user(request, f"{delivery.pk}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} delivery(ies) queued again.", messages.SUCCESS)
