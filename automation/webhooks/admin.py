"""Admin for outbound delivery's endpoints (the deliveries' log: admin_deliveries).

Every change calls the services in automation.webhooks.services (create, update,
disable, rotate the secret, ping), never re-implements them.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from automation.webhooks.admin_deliveries import deliveries_url
from automation.webhooks.models import Endpoint
from automation.webhooks.services import (
    SECRET_ROTATION_OVERLAP,
    endpoint_check_url,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_ping,
    endpoint_reveal_secret,
    endpoint_rotate_secret,
    endpoint_update,
)
from project.admin.deletion import CascadeDeleteAdmin, DeletionPreview
from project.admin.lists import BigTableAdmin
from project.errors import HeraldError


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2048, assume_scheme="https")

    class Meta:
        model = Endpoint
        fields = ("kind", "url", "description", "event_types", "active")

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        # The SSRF guard runs for admin edits too (and again at connection time).
        try:
            endpoint_check_url(url)
        except HeraldError as exc:
            raise forms.ValidationError(exc.message) from None
        return url


class HealthFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("failing", "Failing (no success since a failure)"),
            ("disabled", "Disabled"),
            ("healthy", "Healthy"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
        value = self.value()
        if value == "failing":
            return queryset.filter(active=True, first_failure_at__isnull=False)
        if value == "disabled":
            return queryset.filter(active=False)
        if value == "healthy":
            return queryset.filter(active=True, first_failure_at__isnull=True)
        return queryset


@admin.register(Endpoint)
class EndpointAdmin(CascadeDeleteAdmin, BigTableAdmin):
    """Webhook subscriptions, and the endpoints schedules and workflows send through.

    There is one endpoint per schedule, so this table can hold 100k rows: the
    list is ordered by the time-ordered primary key and searched exactly.
    """

    form = EndpointForm
    # Reveal and rotate buttons under the form (their own POST forms).
    change_form_template = "admin/automation/endpoint/change_form.html"
    list_display = ("url_short", "kind", "active", "health", "last_success_at", "deliveries")
    list_filter = ("kind", HealthFilter)
    ordering = ("-id",)
    sortable_by = ("id",)
    search_fields = ("=id", "=url")  # declared for the search box; search_exact does the work
    search_help_text = "Exact endpoint (webhook) id or exact URL."
    filter_horizontal = ("event_types",)
    readonly_fields = (
        "id",
        "health",
        "deliveries",
        "secret_hint",
        "previous_secret_expires_at",
        "disabled_reason",
        "disabled_at",
        "first_failure_at",
        "last_success_at",
        "created_at",
        "updated_at",
    )
    fields = ("id", "kind", "url", "description", "event_types", "active", *readonly_fields[1:])
    actions = ("disable_endpoints", "enable_endpoints", "rotate_secret", "send_test_ping")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A new endpoint's secret travels from save_model to response_add of the same
        # request only; it is never stored anywhere else.
        self._new_secrets: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()

    class Media:
        js = ("automation/secrets.js",)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<str:object_id>/secret/reveal/",
                wrap(require_POST(self.reveal_secret_view)),
                name="automation_endpoint_reveal_secret",
            ),
            path(
                "<str:object_id>/secret/rotate/",
                wrap(require_POST(self.rotate_secret_view)),
                name="automation_endpoint_rotate_secret",
            ),
            *super().get_urls(),
        ]

    def _secret_endpoint(self, request: HttpRequest, object_id: str) -> Endpoint:
        # Seeing or rotating a secret is changing the endpoint's trust: the change permission.
        endpoint = get_object_or_404(Endpoint, pk=object_id)
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def reveal_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The signing secret in full, on an explicit POST; recorded in the audit log."""
        endpoint = self._secret_endpoint(request, object_id)
        secret = endpoint_reveal_secret(endpoint=endpoint)
        return self._secrets_page(request, [(endpoint, secret)], rotated=False, revealed=True)

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._secret_endpoint(request, object_id)
        secret = endpoint_rotate_secret(endpoint=endpoint)
        return self._secrets_page(request, [(endpoint, secret)], rotated=True)

    def search_exact(self, queryset: QuerySet[Endpoint], term: str) -> QuerySet[Endpoint]:
        # The id arm is the primary key; URLs have no index (a URL may be longer than a
        # btree entry), but endpoints number one per webhook or schedule, not per event.
        return queryset.filter(Q(pk=term) | Q(url=term))

    def get_readonly_fields(self, request: HttpRequest, obj: Endpoint | None = None) -> Any:
        # The kind is chosen once: schedules and workflows own their endpoints.
        return (*self.readonly_fields, "kind") if obj is not None else self.readonly_fields

    @admin.display(description="URL", ordering="id")
    def url_short(self, obj: Endpoint) -> str:
        return Truncator(obj.url).chars(70)

    @admin.display(description="health")
    def health(self, obj: Endpoint) -> str:
        if not obj.active:
            return f"Disabled: {obj.disabled_reason or 'no reason recorded'}"
        if obj.first_failure_at is not None:
            return f"Failing since {obj.first_failure_at:%Y-%m-%d %H:%M} UTC"
        return "OK"

    @admin.display(description="deliveries")
    def deliveries(self, obj: Endpoint) -> SafeString:
        if obj.pk is None:
            return format_html("{}", "—")
        return format_html(
            '<a href="{}">all</a> · <a href="{}">failed</a>',
            deliveries_url(obj.pk),
            deliveries_url(obj.pk, status__exact="failed"),
        )

    @admin.display(description="Signing secret")
    def secret_hint(self, obj: Endpoint) -> str:
        # Shown once (creation, rotation); the admin only helps tell secrets apart.
        return f"{obj.secret[:10]}…" if obj.secret else "-"

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        type_keys = [t.key for t in data.get("event_types") or []]
        if not change:
            created, secret = endpoint_create(
                url=data["url"],
                description=data["description"],
                event_types=type_keys,
                active=data["active"],
                kind=data["kind"],
            )
            obj.pk = created.pk
            obj._state.adding = False
            self._new_secrets[request] = secret
            return
        current = Endpoint.objects.get(pk=obj.pk)
        # The admin edits event types only: reserved keys (`customer.deleted`) are kept.
        type_keys += current.reserved_event_types or []
        fields = {
            name: type_keys if name == "event_types" else data[name]
            for name in ("url", "description", "event_types")
            if name in form.changed_data
        }
        if "active" in form.changed_data and not data["active"]:
            endpoint_disable(endpoint=current, reason=f"Disabled by {request.user}.")
        elif "active" in form.changed_data:
            fields["active"] = True
        if fields:
            endpoint_update(endpoint=current, fields=fields)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Event types were saved by the service."""

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> DeletionPreview:
        endpoints = list(objs)
        owned = [e for e in endpoints if e.kind != Endpoint.Kind.SUBSCRIPTION]
        if owned:
            # Schedules and workflows send through their own endpoints: delete those instead.
            return [], {}, set(), [f"{e.url} belongs to a {e.kind}" for e in owned]
        return super().get_deleted_objects(endpoints, request)

    def delete_one(self, obj: Endpoint) -> None:
        endpoint_delete(endpoint=obj)  # recomputes its events' is_delivered

    def response_add(
        self, request: HttpRequest, obj: Endpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        return self._secrets_page(request, [(obj, self._new_secrets.pop(request))], rotated=False)

    def _secrets_page(
        self,
        request: HttpRequest,
        secrets: list[tuple[Endpoint, str]],
        *,
        rotated: bool,
        revealed: bool = False,
    ) -> HttpResponse:
        """The one page that shows secrets: the answer to the POST, never cached."""
        title = "Secret rotated" if rotated else "Endpoint created"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Signing secret" if revealed else title,
            "secrets": secrets,
            "rotated": rotated,
            "revealed": revealed,
            "overlap_until": timezone.now() + SECRET_ROTATION_OVERLAP,
            "changelist_url": reverse("admin:automation_endpoint_changelist"),
        }
        response = TemplateResponse(request, "admin/automation/endpoint/secret_once.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Disable selected endpoints (fails their pending deliveries)")
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        endpoints = list(queryset.filter(active=True))
        for endpoint in endpoints:
            endpoint_disable(endpoint=endpoint, reason=f"Disabled by {request.user}.")
        self.message_user(request, f"Disabled {len(endpoints)} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Enable selected endpoints (health starts afresh)")
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        endpoints = list(queryset.filter(active=False))
        for endpoint in endpoints:
            endpoint_update(endpoint=endpoint, fields={"active": True})
        self.message_user(request, f"Enabled {len(endpoints)} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Rotate signing secret (new secret shown once)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> HttpResponse:
        secrets = [(endpoint, endpoint_rotate_secret(endpoint=endpoint)) for endpoint in queryset]
        return self._secrets_page(request, secrets, rotated=True)

    @admin.action(description="Send a test ping")
    def send_test_ping(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        endpoints = list(queryset)
        for endpoint in endpoints:
            endpoint_ping(endpoint=endpoint)
        self.message_user(
            request, f"Test ping queued for {len(endpoints)} endpoint(s).", messages.SUCCESS
        )
