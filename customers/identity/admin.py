"""Admin for merges: merge two customers (a dry-run preview, then a confirm step), the
merge records with an undo button, and a customer's aliases and merge history (a panel
CustomerAdmin shows on the customer's page).

Every write goes through customers.identity.services; the preview is the service's
dry run, so the page shows exactly what the merge will do.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from customers.identity import selectors, services
from customers.identity.models import CustomerMerge
from customers.models import Customer
from customers.selectors import customer_by_reference
from project.errors import HeraldError


class MergeForm(forms.Form):
    """Each customer as a person names them: an id, an external id or an anonymous id
    (or an alias of either); cleaned to the customer's id."""

    primary = forms.CharField(
        max_length=255,
        help_text="The customer that stays (keeps its values): their id, external id or "
        "anonymous id.",
    )
    secondary = forms.CharField(
        max_length=255,
        help_text="The customer merged into it and removed: their id, external id or anonymous id.",
    )
    force = forms.BooleanField(
        required=False,
        help_text="Needed when both customers have (different) external ids.",
    )

    def _customer_id(self, name: str) -> str:
        ref = self.cleaned_data[name]
        customer = customer_by_reference(ref=ref)
        if customer is None:
            raise forms.ValidationError(
                f"No customer has the id, external id or anonymous id {ref!r}."
            )
        return customer.pk

    def clean_primary(self) -> str:
        return self._customer_id("primary")

    def clean_secondary(self) -> str:
        return self._customer_id("secondary")


def _customer_label(customer_id: str) -> str:
    customer = Customer.objects.filter(pk=customer_id).first()
    return f"{customer} ({customer_id})" if customer else customer_id


@admin.register(CustomerMerge)
class CustomerMergeAdmin(admin.ModelAdmin):
    list_display = ("id", "primary_link", "secondary_id", "status", "moved_summary", "created_at")
    list_filter = ("status", "source")
    # Exact ids: the indexes on primary_id / secondary_id serve them.
    search_fields = ("=id", "=primary_id", "=secondary_id")
    search_help_text = "A merge id, or the id of either customer."
    ordering = ("-created_at",)
    fields = (
        "id",
        "status",
        "source",
        "primary_link",
        "secondary_id",
        "primary_external_id",
        "secondary_external_id",
        "forced",
        "moved_summary",
        "superseded_counts",
        "attributes_overwritten",
        "attribute_conflicts",
        "tags_added",
        "aliases_added",
        "created_at",
        "undo_until",
        "undone_at",
    )
    readonly_fields = fields
    change_form_template = "admin/customers/customermerge/change_form.html"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("customers.change_customer") and request.user.has_perm(
            "customers.delete_customer"
        )

    @admin.display(description="primary")
    def primary_link(self, obj: CustomerMerge) -> SafeString:
        if not Customer.objects.filter(pk=obj.primary_id).exists():
            return format_html("{}", obj.primary_id)
        url = reverse("admin:customers_customer_change", args=[obj.primary_id])
        return format_html('<a href="{}">{}</a>', url, _customer_label(obj.primary_id))

    @admin.display(description="moved")
    def moved_summary(self, obj: CustomerMerge) -> str:
        return ", ".join(f"{count} {kind}" for kind, count in sorted(obj.moved.items())) or "-"

    @admin.display(description="undo until")
    def undo_until(self, obj: CustomerMerge) -> Any:
        return obj.undo_until()

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/undo/",
                wrap(require_POST(self.undo_view)),
                name="customers_customermerge_undo",
            ),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """ "Add" is "merge two customers": the form, then the dry run's preview with a
        confirm button, then the merge."""
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:customers_customermerge_changelist"))
        source = request.POST if request.method == "POST" else request.GET or None
        form = MergeForm(source)
        preview: dict[str, Any] | None = None
        if form.is_valid():
            data = form.cleaned_data
            confirmed = request.method == "POST" and "confirm" in request.POST
            try:
                result = services.customer_merge(
                    primary_id=data["primary"],
                    secondary_id=data["secondary"],
                    force=data["force"],
                    dry_run=not confirmed,
                )
            except HeraldError as error:
                form.add_error(None, error.message)
            else:
                if isinstance(result, CustomerMerge):
                    self.message_user(request, f"Merged: merge {result.pk}.", messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:customers_customermerge_change", args=[result.pk])
                    )
                preview = result
        context = {
            **self.admin_site.each_context(request),
            "title": "Merge two customers",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
            "primary_label": _customer_label(form.cleaned_data["primary"]) if preview else "",
            "secondary_label": _customer_label(form.cleaned_data["secondary"]) if preview else "",
        }
        return TemplateResponse(request, "admin/customers/customermerge/merge.html", context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: CustomerMerge | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.status == CustomerMerge.Status.MERGED:
            context["undo_url"] = reverse("admin:customers_customermerge_undo", args=[obj.pk])
            context["can_undo"] = self.has_add_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def undo_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        back = reverse("admin:customers_customermerge_change", args=[object_id])
        if not self.has_add_permission(request):
            return HttpResponseRedirect(back)
        try:
            services.merge_undo(merge_id=object_id)
        except HeraldError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(request, "The merge was undone.", messages.SUCCESS)
        return HttpResponseRedirect(back)


def identity_panel(customer: Customer) -> SafeString:
    """The merges a customer took part in (CustomerAdmin shows it below their aliases)."""
    merges = format_html_join(
        "",
        '<li><a href="{}">{}</a> {} ← {} ({}, {})</li>',
        (
            (
                reverse("admin:customers_customermerge_change", args=[m.pk]),
                m.pk,
                m.primary_id,
                m.secondary_id,
                m.status,
                m.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for m in selectors.merge_list(customer_id=customer.pk)[:20]
        ),
    ) or format_html("<li>{}</li>", "none")
    merge_url = reverse("admin:customers_customermerge_add") + f"?primary={customer.pk}"
    return format_html(
        "<p>Merges (undo buttons below the form and on each merge's page)</p>"
        '<ul>{}</ul><p><a href="{}">Merge another customer into this one…</a></p>',
        merges,
        merge_url,
    )


def merges_undoable(customer_id: str) -> list[dict[str, str]]:
    """The merges of this customer not undone yet, newest first, with their undo URLs (the
    customer's page shows an undo button for each; the service says when it refuses)."""
    merges = selectors.merge_list(customer_id=customer_id).filter(
        status=CustomerMerge.Status.MERGED
    )
    return [
        {
            "merge_id": merge.pk,
            "undo_url": reverse("admin:customers_customermerge_undo", args=[merge.pk]),
            "label": f"{merge.secondary_id} merged into {merge.primary_id}",
            "at": merge.created_at.strftime("%Y-%m-%d %H:%M"),
        }
        for merge in merges.order_by("-created_at")[:20]
    ]
