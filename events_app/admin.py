"""Admin for event types and events: what marketers browse every day.

Events are written by the API (events_app.ingestion.event_ingest); here they are
read-only. The event list stays fast at millions of rows: no full COUNT(*) and a
keyset "next page" (project.admin.lists), filters that map onto the
(event_type, created_at, id), (created_at, id) and partial state indexes, key
property values read for the page in one query, and a prefix search whose every arm
is an index range on PostgreSQL (events_app.selectors.event_search).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import construct_change_message
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, QuerySet
from django.forms.formsets import BaseFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from customers.models import Customer
from events_app import admin_api_clients  # noqa: F401 - registers the API clients' admin
from events_app.event_types import (
    PropertyDefinitionInput,
    event_type_create,
    event_type_delete,
    event_type_update,
)
from events_app.models import (
    Event,
    EventCount,
    EventType,
    PropertyDefinition,
    PropertyRecord,
)
from events_app.selectors import event_key_properties, event_search
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import pretty_json
from project.admin.export import CsvExportMixin
from project.admin.forms import RecordAdmin, adopt_row, changed_fields
from project.admin.lists import (
    BigTableAdmin,
    CreatedBetweenFilter,
    CreatedWithinFilter,
    KeysetChangeList,
)

# ---------------------------------------------------------------- event types


class TidyTabularInline(admin.TabularInline):
    class Media:
        css = {"all": ("events_app/admin_inlines.css",)}


class PropertyDefinitionInline(TidyTabularInline):
    model = PropertyDefinition
    fields = ("property_id", "name", "value_type", "required")
    extra = 1


@admin.register(EventType)
class EventTypeAdmin(CascadeDeleteAdmin):
    # The per-type event counters (kept by triggers) are not something to confirm.
    uncounted_models = (EventCount,)
    list_display = ("key", "name", "property_count", "created_at")
    search_fields = ("key", "name")  # a small table: icontains is fine here
    readonly_fields = ("events_link", "id", "created_at", "updated_at")
    fields = ("key", "name", "description", "events_link", "id", "created_at", "updated_at")
    inlines = (PropertyDefinitionInline,)

    @admin.display(description="events")
    def events_link(self, obj: EventType) -> SafeString:
        url = reverse("admin:events_app_event_changelist") + f"?event_type__id__exact={obj.pk}"
        return format_html('<a href="{}">events of this type</a>', url)

    def get_queryset(self, request: HttpRequest) -> QuerySet[EventType]:
        return super().get_queryset(request).annotate(property_total=Count("properties"))

    @admin.display(description="properties", ordering="property_total")
    def property_count(self, obj: EventType) -> int:
        return obj.property_total  # type: ignore[attr-defined]

    # Writes go through event_type_create / event_type_update like the API's,
    # so both agree on what a valid type is. The admin wraps save_model and
    # save_related in one transaction.
    def save_model(self, request: HttpRequest, obj: EventType, form: Any, change: bool) -> None:
        if change:
            event_type_update(event_type=obj, fields=changed_fields(form))
            return
        created = event_type_create(
            key=form.cleaned_data["key"],
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            properties=[],
        )
        adopt_row(obj, created)

    def save_related(
        self, request: HttpRequest, form: Any, formsets: list[Any], change: bool
    ) -> None:
        """Replace the definitions with the inline rows that are kept."""
        definitions = [
            PropertyDefinitionInput(
                property_id=row.cleaned_data["property_id"],
                name=row.cleaned_data.get("name", ""),
                type=row.cleaned_data["value_type"],
                required=row.cleaned_data["required"],
            )
            for formset in formsets
            for row in formset.forms
            if row.cleaned_data and not formset._should_delete_form(row)
        ]
        event_type_update(event_type=form.instance, fields={}, properties=definitions)

    def construct_change_message(
        self,
        request: HttpRequest,
        form: forms.Form,
        formsets: Iterable[BaseFormSet[Any]],
        add: bool = False,
    ) -> list[dict[str, dict[str, list[str]]]]:
        # The inline formsets were not saved by Django (save_related replaced
        # them), so they carry no per-object change lists to report.
        message: list[dict[str, dict[str, list[str]]]] = construct_change_message(form, [], add)
        if not add and any(row.has_changed() for fs in formsets for row in fs.forms):
            if message:
                message[0]["changed"]["fields"].append("property definitions")
            else:
                message.append({"changed": {"fields": ["property definitions"]}})
        return message

    def delete_one(self, obj: EventType) -> None:
        event_type_delete(event_type=obj)


# ---------------------------------------------------------------- events


class PropertyRecordInline(TidyTabularInline):
    model = PropertyRecord
    fields = ("property_id", "property_value")
    readonly_fields = fields
    extra = 0
    can_delete = False

    # Property records are part of the event: whoever may view events sees them.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("events_app.view_event")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CustomerFilter(admin.SimpleListFilter):
    """`?customer=<id>` from a customer's "events" link; never lists all customers.

    Only the selected customer is offered as a choice, so the sidebar shows who
    the list is filtered by without a query over the customers table.
    """

    title = "customer"
    parameter_name = "customer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if not value:
            return []
        customer = Customer.objects.filter(pk=value).only("external_id", "anonymous_id").first()
        return [(value, str(customer) if customer else value)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        value = self.value()
        return queryset.filter(customer_id=value) if value else queryset


class IntegrationStatusFilter(admin.SimpleListFilter):
    """The event's processing status, which the integration sets (PATCH /events/{id}):
    pending / completed / failed. The pending and failed choices are partial-index
    scans (event_pending_idx, event_failed_idx)."""

    title = "status set by integration"
    parameter_name = "state__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(value), label) for value, label in Event.State.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        value = self.value()
        if value not in {str(state) for state in Event.State.values}:
            return queryset
        return queryset.filter(state=int(value))  # type: ignore[arg-type]


class DeliveredFilter(admin.BooleanFieldListFilter):
    """Whether every webhook delivery of the event succeeded ("No" is a partial-index
    scan, event_undelivered_idx)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "delivered"


class EventChangeList(KeysetChangeList):
    """The events list, with each event's key property values read for the page in one
    query (event_key_properties) rather than one per row."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        facts = event_key_properties(events=list(self.result_list), limit=LIST_FACTS)
        for event in self.result_list:
            event.key_facts = facts.get(event.pk, [])


# Property values shown per row of the events list (the event's page has them all).
LIST_FACTS = 3
INTEGRATION_STATUS_HELP = (
    "Set by your integration (PATCH /events/{id}): pending until it marks the event "
    "completed or failed. It says nothing about Herald's own work: see "
    "“automation processed”."
)


@admin.register(Event)
class EventAdmin(CsvExportMixin, RecordAdmin, BigTableAdmin):
    list_display = (
        "id",
        "event_type",
        "customer_external_id",
        "external_id",
        "key_properties",
        "integration_status",
        "delivered",
        "created_when",
    )
    list_filter = (
        "event_type",
        IntegrationStatusFilter,
        CreatedWithinFilter,
        CreatedBetweenFilter,
        ("is_delivered", DeliveredFilter),
        CustomerFilter,
    )
    list_select_related = ("event_type", "customer")
    wide_changelist = True
    # Only columns an index can sort (the primary key is time-ordered too).
    sortable_by = ("id", "created_when")
    # Declared so the search box is drawn; search_indexed does the work.
    search_fields = ("=id", "=external_id", "=customer__external_id")
    search_help_text = (
        "An event id, or the start of a ref, a customer's external id or email, or an "
        "event type (any case)."
    )
    # Should events ever become editable here, customers are picked by
    # autocomplete, never from a <select> of every customer.
    autocomplete_fields = ("customer", "event_type")
    inlines = (PropertyRecordInline,)
    fieldsets = (
        (None, {"fields": ("id", "event_type_link", "customer_link")}),
        (
            "Status",
            {
                "fields": ("integration_status", "is_delivered", "automation_processed"),
                "description": INTEGRATION_STATUS_HELP,
            },
        ),
        ("References", {"fields": ("external_id", "secondary_external_id")}),
        ("Time", {"fields": ("occurred_at", "created_at", "completed_at", "failed_at")}),
        ("Data", {"fields": ("data_pretty",)}),
        ("Automation", {"fields": ("automation_links", "depth")}),
    )
    readonly_fields = (
        "id",
        "event_type_link",
        "customer_link",
        "integration_status",
        "automation_processed",
        "is_delivered",
        "external_id",
        "secondary_external_id",
        "occurred_at",
        "created_at",
        "completed_at",
        "failed_at",
        "data_pretty",
        "automation_links",
        "depth",
    )

    def get_export_fields(self, request: HttpRequest) -> list[str]:
        """The default columns, and an anonymous customer's anonymous id beside the
        customer's external id (empty for them)."""
        fields = super().get_export_fields(request)
        if "customer__external_id" in fields:
            fields.insert(fields.index("customer__external_id") + 1, "customer__anonymous_id")
        return fields

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EventChangeList

    def search_indexed(
        self, request: HttpRequest, queryset: QuerySet[Event], term: str
    ) -> QuerySet[Event]:
        return event_search(queryset=queryset, term=term)

    @admin.display(description="status set by integration", ordering="state")
    def integration_status(self, obj: Event) -> str:
        return obj.status

    # Short headers and a compact time: the list fits a 1280 px window with the
    # sidebars open. When it occurred is on the event's page.
    @admin.display(description="delivered", boolean=True, ordering="is_delivered")
    def delivered(self, obj: Event) -> bool:
        return obj.is_delivered

    @admin.display(description="created", ordering="created_at")
    def created_when(self, obj: Event) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="automation processed", boolean=True)
    def automation_processed(self, obj: Event) -> bool:
        return not obj.automation_pending

    @admin.display(description="key properties")
    def key_properties(self, obj: Event) -> SafeString:
        facts = getattr(obj, "key_facts", [])
        if not facts:
            return format_html("{}", "—")
        return format_html_join(
            " ",
            '<span class="herald-fact"><span class="herald-fact-name">{}</span> = {}</span>',
            ((name, Truncator(value).chars(40)) for name, value in facts),
        )

    @admin.display(description="customer")
    def customer_external_id(self, obj: Event) -> str:
        return str(obj.customer)

    @admin.display(description="event type")
    def event_type_link(self, obj: Event) -> SafeString:
        url = reverse("admin:events_app_eventtype_change", args=[obj.event_type_id])
        return format_html('<a href="{}">{}</a> ({})', url, obj.event_type.key, obj.event_type.name)

    @admin.display(description="customer")
    def customer_link(self, obj: Event) -> SafeString:
        customer_url = reverse("admin:customers_customer_change", args=[obj.customer_id])
        events_url = reverse("admin:events_app_event_changelist") + f"?customer={obj.customer_id}"
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">all events of this customer</a>',
            customer_url,
            str(obj.customer),
            events_url,
        )

    @admin.display(description="history")
    def automation_links(self, obj: Event) -> SafeString:
        # Both lists are searched by event id through an index (automation/admin).
        runs = reverse("admin:automation_workflowrun_changelist") + f"?q={obj.pk}"
        deliveries = reverse("admin:automation_delivery_changelist") + f"?q={obj.pk}"
        # Why (not): its type's workflows tested against it (the automation admin's page).
        why = reverse("admin:automation_workflow_why_event") + f"?event={obj.pk}"
        return format_html(
            '<a href="{}">workflow runs of this event</a> · '
            '<a href="{}">its webhook deliveries</a> · '
            '<a href="{}" class="herald-why-link">why (not)? test its workflows</a>',
            runs,
            deliveries,
            why,
        )

    @admin.display(description="data")
    def data_pretty(self, obj: Event) -> SafeString:
        return pretty_json(obj.data)
