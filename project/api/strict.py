"""Strict input: unknown body keys and unknown query parameters are errors.

DRF silently drops keys a serializer does not declare, so a typo such as
`"emial"` in a PATCH would answer 200 and change nothing. Every request
serializer of the API derives from `StrictSerializer`, which names the unknown
keys in the 400's `details` (nested serializers report their own, so the path
reads `customer.emial`).

Django and DRF ignore query parameters nobody reads just as silently
(`?sort_feild=`, `?count=5` on a detail route). Every API view derives from
`StrictAPIView`; each method declares its parameters once with `@query_params`,
which both documents them in the OpenAPI document and is the set the view
checks every request against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import APISettings
from rest_framework.views import APIView

from project.api.body import NUL_REFUSED, parse_json_object
from project.api.errors import ApiError

UNKNOWN_FIELD = "Unknown field."
ACCEPTED_QUERY_PARAMS = "accepted_query_params"
NON_BLANK_QUERY_PARAMS = "non_blank_query_params"

F = TypeVar("F", bound=Callable[..., Any])


class StrictSerializer(serializers.Serializer):
    """A Serializer that rejects keys it does not declare as writable fields."""

    def to_internal_value(self, data: Any) -> Any:
        unknown: list[str] = []
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data if key not in writable)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # Report unknown keys together with the other problems, not one round-trip later.
            detail = (
                exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            )
            raise serializers.ValidationError(
                {**detail, **{key: [UNKNOWN_FIELD] for key in unknown}}
            ) from None
        if unknown:
            raise serializers.ValidationError({key: [UNKNOWN_FIELD] for key in unknown})
        return value


class NonEmptyPatchMixin:
    """For PATCH bodies: a wrapper object that sets nothing is a mistake, not a no-op."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give at least one field to change.")
        return attrs


def validated_body(request: Request, serializer_class: type[serializers.Serializer]) -> Any:
    """Decode a JSON object body (415/400 on bad bytes) and validate it with a serializer."""
    serializer = serializer_class(data=parse_json_object(request))
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning 157613 into "157613".

    The msgspec-validated event bodies are strict about JSON types; the CRUD
    bodies follow the same rule so an id is a string everywhere.
    """

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# ---------------------------------------------------------------- query parameters


def query_params(*parameters: OpenApiParameter) -> Callable[[F], F]:
    """Declare the query parameters a view method takes (none, without this decorator).

    The one declaration: drf-spectacular documents the parameters (stacked
    `@extend_schema` decorators add up), and StrictAPIView rejects any other.
    """
    for parameter in parameters:
        if parameter.location != OpenApiParameter.QUERY:
            raise ValueError(f"'{parameter.name}' is not a query parameter.")
    names = frozenset(parameter.name for parameter in parameters)
    # allow_blank=False (filters): documented as minLength 1, and an empty value is a 400.
    non_blank = frozenset(parameter.name for parameter in parameters if not parameter.allow_blank)

    def decorate(method: F) -> F:
        method = extend_schema(parameters=list(parameters))(method)
        setattr(method, ACCEPTED_QUERY_PARAMS, names)
        setattr(method, NON_BLANK_QUERY_PARAMS, non_blank)
        return method

    return decorate


def bool_query_param(request: Request, name: str) -> bool | None:
    """A true/false query parameter; None when absent or empty."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in {"true", "false"}:
        raise ApiError(
            f"Query parameter '{name}' must be true or false.",
            details={name: [f"'{raw}' is not true or false."]},
        )
    return raw.lower() == "true"


def reject_unknown_query_params(query: Collection[str], accepted: Collection[str]) -> None:
    """400 naming the parameters not in `accepted`, with the accepted ones in `details`."""
    unknown = sorted(set(query) - set(accepted))
    if not unknown:
        return
    allowed = (
        f"Allowed: {', '.join(sorted(accepted))}."
        if accepted
        else "This endpoint takes no query parameters."
    )
    raise ApiError(
        f"Unknown query parameter(s): {', '.join(unknown)}.",
        details={name: [allowed] for name in unknown},
    )


def reject_null_characters(values: Iterable[tuple[str, list[str]]], what: str) -> None:
    """400 naming the first parameter whose values hold a null character (%00)."""
    for name, items in values:
        if any("\x00" in item for item in items):
            raise ApiError(
                f"{what} '{name}' must not contain null characters.",
                details={name: [NUL_REFUSED]},
            )


def reject_blank_query_params(query: QueryDict, non_blank: Collection[str]) -> None:
    """400 naming the filters given an empty value (`?email=`), which would filter nothing."""
    blank = sorted(name for name in non_blank if "" in query.getlist(name))
    if blank:
        raise ApiError(
            f"Empty query parameter(s): {', '.join(blank)}.",
            details={name: ["May not be empty."] for name in blank},
        )


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """The API speaks only JSON, so `?format=` is not one of its parameters.

    DRF would read `?format=xml` as a renderer choice and answer a bare 404;
    without the override it is an unknown parameter like any other. Only
    URL_FORMAT_OVERRIDE is read from these settings.
    """

    settings = APISettings(user_settings={"URL_FORMAT_OVERRIDE": None})  # type: ignore[arg-type,assignment]

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> Any:
        # What integrations send -- no Accept header, `*/*`, or exactly the one renderer's
        # media type -- is answered without parsing the header (on every request of the
        # API): the choice DefaultContentNegotiation makes for it. Anything else goes
        # through it (406 included).
        if isinstance(renderers, list) and len(renderers) == 1 and not format_suffix:
            media_type = renderers[0].media_type
            accept = request._request.META.get("HTTP_ACCEPT", "*/*")
            if accept == "*/*" or accept == media_type:
                return renderers[0], media_type
        return super().select_renderer(request, renderers, format_suffix)


class StrictAPIView(APIView):
    """Base of every API view: a query parameter the method does not declare is a 400.

    Checked after authentication and permissions (those errors come first, as
    for bodies) and before the handler runs, so a rejected request changes nothing.
    A null character in a query parameter or a path segment is a 400 here too:
    PostgreSQL cannot compare text with one, so no lookup may see it.
    """

    content_negotiation_class = JsonOnlyNegotiation

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # The hot path (POST /events) has no query string: one dict lookup, no
        # QueryDict. `request._request`: DRF's Request proxies META through a
        # __getattr__ fallback, which costs more than the check.
        if request._request.META.get("QUERY_STRING"):
            handler = getattr(self, request.method.lower(), None)  # type: ignore[union-attr]
            if handler is not None:  # else the 405 comes next
                accepted: frozenset[str] = getattr(handler, ACCEPTED_QUERY_PARAMS, frozenset())
                reject_unknown_query_params(request.query_params, accepted)
                reject_null_characters(request.query_params.lists(), "Query parameter")
                non_blank: frozenset[str] = getattr(handler, NON_BLANK_QUERY_PARAMS, frozenset())
                reject_blank_query_params(request.query_params, non_blank)
        if kwargs:
            reject_null_characters(
                ((name, [value]) for name, value in kwargs.items() if isinstance(value, str)),
                "Path segment",
            )
