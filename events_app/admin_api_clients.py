"""Admin for API clients (keys): created with api_client_create, the secret shown once,
revoked with api_client_revoke, rate budgets edited in place. Registered through
events_app.admin, which imports this module."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from events_app.api_clients import (
    RATE_LIMIT_FIELDS,
    api_client_create,
    api_client_revoke,
    api_client_set_rate_limits,
)
from events_app.models import ApiClient
from project.admin.forms import adopt_row


class ApiClientCreateForm(forms.ModelForm):
    """Name and scopes; the secret is made by api_client_create and shown once."""

    scope_choices = forms.MultipleChoiceField(
        label="Scopes",
        choices=[(scope, scope) for scope in ApiClient.ALL_SCOPES],
        initial=list(ApiClient.ALL_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        help_text="read: GET requests; write: POST / PATCH / DELETE.",
    )

    class Meta:
        model = ApiClient
        fields = ("name",)


class ActiveFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> QuerySet[ApiClient]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


def _refused_when() -> str:
    """Worker processes trust a key they looked up for API_KEY_CACHE_SECONDS."""
    ttl = settings.API_KEY_CACHE_SECONDS
    return "now get 401" if ttl <= 0 else f"get 401 within {ttl:g} second{'' if ttl == 1 else 's'}"


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """API keys: created with api_client_create, revoked with api_client_revoke.

    Of an existing key only its rate budgets can be changed (a key's secret cannot
    be shown again and its hash is never displayed); keys are kept after
    revocation as a record.
    """

    list_display = ("name", "scopes", "secret_prefix", "created_at", "last_used_at", "is_active")
    list_filter = (ActiveFilter,)
    search_fields = ("name",)
    actions = ("revoke",)
    change_form_template = "admin/events_app/apiclient/change_form.html"
    readonly_fields = (
        "name",
        "scopes",
        "secret_prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The plain secret travels from save_model to response_add of the same
        # request only; it is never stored, not even in the session.
        self._new_secrets: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: ApiClient) -> bool:
        return obj.revoked_at is None

    def get_form(
        self,
        request: HttpRequest,
        obj: ApiClient | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiClientCreateForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiClient | None = None) -> Any:
        if obj is None:
            return ["name", "scope_choices"]
        return [*self.readonly_fields, *RATE_LIMIT_FIELDS]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiClient | None = None
    ) -> tuple[str, ...]:
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if change:  # only the rate budgets are editable once created
            api_client_set_rate_limits(
                client=obj, **{name: form.cleaned_data[name] for name in RATE_LIMIT_FIELDS}
            )
            return
        client, secret = api_client_create(
            name=form.cleaned_data["name"], scopes=form.cleaned_data["scope_choices"]
        )
        adopt_row(obj, client)
        self._new_secrets[request] = secret

    def response_add(
        self, request: HttpRequest, obj: ApiClient, post_url_continue: str | None = None
    ) -> HttpResponse:
        """Show the secret on the page answering the POST, once, uncached."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key created",
            "client": obj,
            "secret": self._new_secrets.pop(request),
            "changelist_url": reverse("admin:events_app_apiclient_changelist"),
        }
        response = TemplateResponse(request, "admin/events_app/apiclient/secret_once.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for client in active:
            api_client_revoke(client=client)
        self.message_user(
            request, f"Revoked {len(active)} API key(s); requests with them {_refused_when()}."
        )

    def get_urls(self) -> list[URLPattern]:
        revoke_one = self.admin_site.admin_view(require_POST(self.revoke_view))
        return [
            path("<path:object_id>/revoke/", revoke_one, name="events_app_apiclient_revoke"),
            *super().get_urls(),
        ]

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Revoke this key" button."""
        client = self.get_object(request, unquote(object_id))
        if client is None:
            raise Http404("No such API client.")
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        api_client_revoke(client=client)
        self.message_user(
            request,
            f"API key '{client.name}' revoked; requests with it {_refused_when()}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:events_app_apiclient_change", args=[client.pk]))
