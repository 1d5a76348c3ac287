"""Admin for customers: found by the start of an id or email, filtered by tag, and
each one's story (customers.timeline) on their page. Anonymous customers (known by an
`anonymous_id` only) are listed as "anonymous <anonymous id>" and filtered apart; the
aliases a customer gained by merges are shown, read-only, on their page.

The customers table can hold millions of rows, so the list uses the estimated
count paginator and keyset paging (project.admin.lists), a prefix search that
customer_external_upper_idx and customer_email_upper_idx serve, and a tag filter
served by customer_tags_gin_idx (customers.selectors). Saves and deletes go
through customers.services.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

# Registers the merge records' admin; identity_panel: aliases and merges on this page.
from customers.hooks import customers_kept
from customers.identity.admin import identity_panel, merges_undoable
from customers.models import Customer
from customers.selectors import customer_search, customers_with_tag
from customers.services import customer_create, customer_delete, customer_update
from customers.timeline import TIMELINE_PAGE_SIZE, TimelineCursor, customer_timeline
from project.admin.deletion import CascadeDeleteAdmin
from project.admin.export import CsvExportMixin
from project.admin.forms import adopt_row, changed_fields
from project.admin.keyvalue import KeyValueField
from project.admin.lists import BigTableAdmin, CreatedWithinFilter, other_params

# The query parameter of an older page of a customer's story.
STORY_AFTER_VAR = "story_after"
MAX_TAG_LENGTH = 200


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
    attributes = KeyValueField(required=False)
    tags = TagsField(
        required=False,
        help_text="Comma-separated, e.g. vip, newsletter.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = Customer
        fields = ("external_id", "email", "attributes", "tags")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        external_id = self.fields.get("external_id")
        if external_id is not None:
            # Required, as the API requires it, except on an anonymous customer's page
            # (left empty it stays anonymous; given, it identifies them).
            external_id.required = self.instance._state.adding or not self.instance.is_anonymous


class TagFilter(admin.SimpleListFilter):
    """`?tag=vip`: customers carrying the tag. The tags in use are not listed (that
    would read every customer); each tag in the list links here, and the sidebar
    names the tag in use."""

    title = "tag"
    parameter_name = "tag"
    template = "admin/customers/customer/tag_filter.html"

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.other_params = other_params(request, self.parameter_name)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        value = (self.value() or "").strip()
        if not value or len(value) > MAX_TAG_LENGTH or "\x00" in value:
            return queryset
        return customers_with_tag(queryset=queryset, tag=value)


class AnonymousFilter(admin.SimpleListFilter):
    """Identified customers (with an external id) or anonymous ones (an anonymous id
    only): `external_id IS NULL`, which the external id's unique index serves."""

    title = "identity"
    parameter_name = "anonymous"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "identified"), ("yes", "anonymous")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        value = self.value()
        if value in ("yes", "no"):
            return queryset.filter(external_id__isnull=value == "yes")
        return queryset


def events_url(customer: Customer) -> str:
    return reverse("admin:events_app_event_changelist") + f"?customer={customer.pk}"


@admin.register(Customer)
class CustomerAdmin(CsvExportMixin, CascadeDeleteAdmin, BigTableAdmin):
    form = CustomerForm
    change_form_template = "admin/customers/customer/change_form.html"
    list_display = ("name", "email", "created_at", "tag_list", "events_link")
    list_filter = (TagFilter, AnonymousFilter, CreatedWithinFilter)
    sortable_by = ("name", "created_at")
    wide_changelist = True
    # Declared so the search box and the autocomplete endpoint are enabled;
    # search_indexed does the work.
    search_fields = ("=external_id", "=email")
    search_help_text = (
        "A customer id or anonymous id, or the start of an external id or email (any case)."
    )
    fields = (
        "external_id",
        "anonymous_id",
        "alias_table",
        "email",
        "attributes",
        "tags",
        "events_link",
        "id",
    )
    story_page_size = TIMELINE_PAGE_SIZE
    readonly_fields = (
        "events_link",
        "id",
        "created_at",
        "updated_at",
        "attributes_table",
        "tag_chips",
        "anonymous_id",
        "alias_table",
        "identity",
    )

    def get_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        if obj is None:
            # Tags are set once the customer exists (customer_update takes them).
            return ["external_id", "email", "attributes"]
        if not self.has_change_permission(request, obj):
            # Read-only: a table of attributes and the tags as chips, not form fields.
            return [
                "external_id",
                "anonymous_id",
                "alias_table",
                "email",
                "attributes_table",
                "tag_chips",
                "events_link",
                "identity",
                "id",
            ]
        return [*self.fields, "identity", "created_at", "updated_at"]

    def search_indexed(
        self, request: HttpRequest, queryset: QuerySet[Customer], term: str
    ) -> QuerySet[Customer]:
        return customer_search(queryset=queryset, term=term)

    @admin.display(description="customer", ordering="external_id")
    def name(self, obj: Customer) -> str:
        """The external id, or "anonymous <anonymous id>" (Customer.__str__)."""
        return str(obj)

    @admin.display(description="tags")
    def tag_list(self, obj: Customer) -> SafeString:
        tags = obj.tags if isinstance(obj.tags, list) else []
        if not tags:
            return format_html("{}", "—")
        changelist = reverse("admin:customers_customer_changelist")
        return format_html_join(
            " ",
            '<a class="herald-tag" href="{}?{}" title="customers tagged {}">{}</a>',
            ((changelist, urlencode({"tag": tag}), tag, tag) for tag in tags),
        )

    @admin.display(description="tags")
    def tag_chips(self, obj: Customer) -> SafeString:
        return self.tag_list(obj)

    @admin.display(description="aliases")
    def alias_table(self, obj: Customer) -> SafeString:
        """The identifiers that resolve to the customer besides their own (made by
        merges, customers.identity): shown, never edited here."""
        aliases = obj.aliases.order_by("kind", "value")
        if not aliases:
            return format_html("{}", "—")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (a.kind, a.value, a.merge_id or "—", a.created_at.strftime("%Y-%m-%d %H:%M"))
                for a in aliases
            ),
        )
        return format_html(
            '<table class="herald-aliases"><thead><tr><th>kind</th><th>value</th>'
            "<th>merge</th><th>since</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="attributes")
    def attributes_table(self, obj: Customer) -> SafeString:
        attributes = obj.attributes if isinstance(obj.attributes, dict) else {}
        if not attributes:
            return format_html("{}", "—")
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td></tr>',
            ((key, _readable(value)) for key, value in sorted(attributes.items())),
        )
        return format_html('<table class="herald-attributes">{}</table>', rows)

    @admin.display(description="aliases and merges")
    def identity(self, obj: Customer) -> SafeString:
        return identity_panel(obj)

    @admin.display(description="events")
    def events_link(self, obj: Customer) -> SafeString:
        return format_html('<a href="{}">events</a>', events_url(obj))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Customer | None = None,
    ) -> HttpResponse:
        if obj is not None and request.user.has_perm("events_app.view_event"):
            context.update(self.story_context(request, obj))
        if obj is not None and request.user.has_perm("customers.delete_customer"):
            context["merges_undoable"] = merges_undoable(obj.pk)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def story_context(self, request: HttpRequest, customer: Customer) -> dict[str, Any]:
        """One page of the customer's story and the links to the newest and older pages."""
        token = request.GET.get(STORY_AFTER_VAR, "")
        after = TimelineCursor.decode(token) if token else None
        page = customer_timeline(customer_id=customer.pk, after=after, limit=self.story_page_size)
        here = reverse("admin:customers_customer_change", args=[customer.pk])
        older = None
        if page.next_cursor is not None:
            older = f"{here}?{urlencode({STORY_AFTER_VAR: page.next_cursor.encode()})}#story"
        return {
            "story": page.entries,
            "story_older_url": older,
            "story_newest_url": f"{here}#story" if after is not None else None,
        }

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

    def kept_with(self, objects: QuerySet[Customer]) -> dict[str, list[QuerySet[Any]]]:
        # customer_delete's erase hooks keep some rows redacted (their deliveries).
        return customers_kept(customer_ids=list(objects.values_list("pk", flat=True)))


def _readable(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# Privacy requests (customers.privacy) live in their own module.
from customers.privacy import admin as privacy_admin  # noqa: E402, F401
