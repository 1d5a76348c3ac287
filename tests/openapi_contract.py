"""Check real API responses against the OpenAPI document Herald serves.

Contract tests call `assert_matches_openapi(response)` on what the test client
got back: openapi-core finds the operation by method and path in the generated
schema and validates status code, content type and body. A response the
document does not describe (an undocumented status, a field of the wrong type,
a missing envelope) fails the test, so "a client generated from the schema
works" is checked on every contract test, not assumed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.generators import SchemaGenerator
from openapi_core import Config, OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.request.validators import (
    V30RequestBodyValidator,
    V30RequestSecurityValidator,
)
from rest_framework.test import APIClient

from project.api.errors import API_PREFIX


@cache
def served_schema() -> dict[str, Any]:
    """The document GET /schema/ serves: same generator, settings and postprocessing hooks."""
    return _plain(SchemaGenerator().get_schema(request=None, public=True))


@cache
def served_openapi() -> OpenAPI:
    return OpenAPI.from_dict(served_schema())


@cache
def request_checker(validator: type) -> OpenAPI:
    """The served document with one request validator. Built once: openapi-core checks the
    whole document each time an OpenAPI is made (~1.4 s), as its validate_request() does."""
    return OpenAPI(served_openapi().spec, config=Config(request_validator_cls=validator))


def _plain(node: Any) -> Any:
    """drf-spectacular returns lazy strings and OrderedDicts; openapi-core wants JSON types."""
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(item) for item in node]
    if node is None or isinstance(node, bool | int | float):
        return node
    return str(node)


def assert_matches_openapi(response: Any) -> None:
    """Raise if the response (with its request) is not what the schema documents.

    A request the API accepted (2xx) must also be valid by the document (its
    body and its credentials): a client that builds requests from the schema
    must be able to send what the API takes. Query parameters are not checked
    this way: the document may name the canonical spelling (`ASC`) of a value
    the API also takes in other spellings (`asc`).
    """
    request = DjangoOpenAPIRequest(response.wsgi_request)
    if response.status_code < 300:
        request_checker(V30RequestBodyValidator).validate_request(request)
        request_checker(V30RequestSecurityValidator).validate_request(request)
    served_openapi().validate_response(request, DjangoOpenAPIResponse(response))


class ContractAPIClient(APIClient):
    """An APIClient that checks every response of a documented operation against the schema.

    Responses to requests the document has no operation for (an unknown path,
    a method the endpoint does not allow) are the 404/405 of the error shape and
    are left to the tests that assert them.
    """

    def request(self, *args: Any, **kwargs: Any) -> Any:
        response = super().request(*args, **kwargs)
        if not response.wsgi_request.path.startswith(API_PREFIX):
            return response
        try:
            assert_matches_openapi(response)
        except (PathNotFound, OperationNotFound):
            if response.status_code not in {404, 405}:
                raise
        return response
