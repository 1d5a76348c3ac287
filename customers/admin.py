"""Admin for customers: found by exact external id or email, linked to their events.

The customers table can hold millions of rows, so the list uses the estimated
count paginator (project.admin.lists) and an exact-match search that the
unique external_id index and customer_email_idx serve. Saves and deletes go
through customers.services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from customers.models import Customer
from customers.services import customer_create, customer_delete, customer_update
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.display import PrettyJSONFormField
from project.admin.export import CsvExportMixin
from project.admin.forms import adopt_row, changed_fields
from project.admin.lists import BigTableAdmin, CreatedWithinFilter


class TagsField(forms.CharField):
    """Tags as one comma-separated line; stored as a JSON list."""

    def prepare_value(self, value: Any) -> str:
        return ", ".join(value) if isinstance(value, list) else (value or "")

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        return [tag.strip() for tag in (text or "").split(",") if tag.strip()]

    def has_changed(self, initial: Any, data: Any) -> bool:
        return (initial or []) != self.to_python(data)


class CustomerForm(forms.ModelForm):
    attributes = PrettyJSONFormField(required=False)
    tags = TagsField(required=False, help_text="Comma-separated, e.g. vip, newsletter.")

    class Meta:
        model = Customer
        fields = ("external_id", "email", "attributes", "tags")

    def clean_attributes(self) -> dict[str, Any]:
        value = self.cleaned_data.get("attributes")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Attributes must be a JSON object.")
        return value


def events_url(customer: Customer) -> str:
    return reverse("admin:events_app_event_changelist") + f"?customer={customer.pk}"


@admin.register(Customer)
class CustomerAdmin(CsvExportMixin, CascadeDeleteAdmin, BigTableAdmin):
    form = CustomerForm
    list_display = ("external_id", "email", "created_at", "tag_list", "events_link")
    list_filter = (CreatedWithinFilter,)
    sortable_by = ("external_id", "created_at")
    # Declared so the search box and the autocomplete endpoint are enabled;
    # search_exact does the work.
    search_fields = ("=external_id", "=email")
    search_help_text = "Exact external id, email or customer id."
    fields = ("external_id", "email", "attributes", "tags", "events_link", "id")
    readonly_fields = ("events_link", "id", "created_at", "updated_at")

    def get_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        if obj is None:
            # Tags are set once the customer exists (customer_update takes them).
            return ["external_id", "email", "attributes"]
        return [*self.fields, "created_at", "updated_at"]

    def search_exact(self, queryset: QuerySet[Customer], term: str) -> QuerySet[Customer]:
        # Each arm is a btree index lookup (pk, the unique external_id,
        # customer_email_idx), combined with a BitmapOr.
        return queryset.filter(Q(pk=term) | Q(external_id=term) | Q(email=term))

    @admin.display(description="tags")
    def tag_list(self, obj: Customer) -> SafeString:
        tags = obj.tags if isinstance(obj.tags, list) else []
        if not tags:
            return format_html("{}", "—")
        return format_html_join(
            " ",
            '<span class="herald-tag">{}</span>',
            ((tag,) for tag in tags),
        )

    @admin.display(description="events")
    def events_link(self, obj: Customer) -> SafeString:
        return format_html('<a href="{}">events</a>', events_url(obj))

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        if change:
            if fields := changed_fields(form):
                customer_update(customer=obj, fields=fields)
            return
        created = customer_create(
            external_id=form.cleaned_data["external_id"],
            email=form.cleaned_data["email"],
            attributes=form.cleaned_data["attributes"],
        )
        adopt_row(obj, created)

    def delete_one(self, obj: Customer) -> None:
        customer_delete(customer=obj)
