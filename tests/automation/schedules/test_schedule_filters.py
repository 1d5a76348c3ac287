"""GET /schedules filters (seed 003): owners any of, tags all of, context path filters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.schedules.models import Schedule
from tests.conftest import API

URL = f"{API}/schedules"


@pytest.fixture
def schedules(make_schedule: Callable[..., Schedule]) -> dict[str, str]:
    made = {
        "alice_prod": make_schedule(
            owner="alice@example.com",
            tags=["prod", "billing"],
            context={"user": 12345, "plan": "gold", "groups": [1, 2], "labels": ["vip"]},
        ),
        "alice_dev": make_schedule(
            owner="alice@example.com",
            tags=["dev"],
            context={"user": "12345", "plan": "silver", "groups": [3], "nested": {"a": {"b": 7}}},
        ),
        "bob_prod": make_schedule(
            owner="bob@example.com",
            tags=["prod"],
            context={"user": 12345.0, "plan": "gold", "labels": ["vip", "new"]},
        ),
        "carol": make_schedule(owner="carol@example.com", tags=[], context={}),
    }
    return {name: schedule.id for name, schedule in made.items()}


def found(api: APIClient, params: dict[str, Any], schedules: dict[str, str]) -> set[str]:
    response = api.get(URL, params)
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    by_id = {v: k for k, v in schedules.items()}
    names = {by_id[s["schedule_id"]] for s in data["schedules"]}
    assert data["total_items"] == len(names)
    return names


def query(**parts: Any) -> dict[str, str]:
    return {"query": json.dumps(parts)}


def test_owner_filter_matches_any_of_the_owners(api: APIClient, schedules: dict[str, str]) -> None:
    assert found(api, {"owner": "alice@example.com"}, schedules) == {"alice_prod", "alice_dev"}
    assert found(api, {"owner": "bob@example.com,carol@example.com"}, schedules) == {
        "bob_prod",
        "carol",
    }
    assert found(api, query(owner=["bob@example.com", "carol@example.com"]), schedules) == {
        "bob_prod",
        "carol",
    }


def test_tags_filter_needs_all_of_the_tags(api: APIClient, schedules: dict[str, str]) -> None:
    assert found(api, {"tags": "prod"}, schedules) == {"alice_prod", "bob_prod"}
    assert found(api, {"tags": "prod,billing"}, schedules) == {"alice_prod"}
    assert found(api, query(tags=["prod", "dev"]), schedules) == set()


def test_owner_and_tags_combine(api: APIClient, schedules: dict[str, str]) -> None:
    params = query(owner=["alice@example.com", "bob@example.com"], tags=["prod"])
    assert found(api, params, schedules) == {"alice_prod", "bob_prod"}
    assert found(api, {"owner": "bob@example.com", "tags": "billing"}, schedules) == set()


def test_context_number_compares_numerically(api: APIClient, schedules: dict[str, str]) -> None:
    # The seed's example: value "12345" as a Number matches 12345 and 12345.0, not "12345".
    params = query(context=[{"path": ["user"], "value": "12345", "type": "Number"}])
    assert found(api, params, schedules) == {"alice_prod", "bob_prod"}


def test_context_string_compares_exactly(api: APIClient, schedules: dict[str, str]) -> None:
    params = query(context=[{"path": ["user"], "value": "12345", "type": "String"}])
    assert found(api, params, schedules) == {"alice_dev"}
    params = query(context=[{"path": ["plan"], "value": "gold", "type": "String"}])
    assert found(api, params, schedules) == {"alice_prod", "bob_prod"}


def test_context_nested_path(api: APIClient, schedules: dict[str, str]) -> None:
    params = query(context=[{"path": ["nested", "a", "b"], "value": 7, "type": "Number"}])
    assert found(api, params, schedules) == {"alice_dev"}


def test_context_is_array_means_the_array_contains_the_value(
    api: APIClient, schedules: dict[str, str]
) -> None:
    numbers = query(context=[{"path": ["groups"], "value": "2", "type": "Number", "isArray": True}])
    assert found(api, numbers, schedules) == {"alice_prod"}
    strings = query(
        context=[{"path": ["labels"], "value": "vip", "type": "String", "is_array": True}]
    )
    assert found(api, strings, schedules) == {"alice_prod", "bob_prod"}


def test_context_filters_all_apply_with_owner_and_tags(
    api: APIClient, schedules: dict[str, str]
) -> None:
    params = query(
        owner=["alice@example.com", "bob@example.com"],
        tags=["prod"],
        context=[
            {"path": ["plan"], "value": "gold", "type": "String"},
            {"path": ["labels"], "value": "new", "type": "String", "isArray": True},
        ],
    )
    assert found(api, params, schedules) == {"bob_prod"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "Invalid query parameter 'query': Malformed JSON body"),
        ('{"colour": 1}', "Invalid query parameter 'query': Invalid input: "),
        (
            '{"context": [{"path": ["user"], "value": "abc", "type": "Number"}]}',
            "Invalid query parameter 'query': context[0].value 'abc' is not a number.",
        ),
        (
            '{"context": [{"path": [], "value": "1", "type": "Number"}]}',
            "Invalid query parameter 'query': Invalid input: ",
        ),
        (
            '{"context": [{"path": ["a"], "value": "1", "type": "Boolean"}]}',
            "Invalid query parameter 'query': Invalid input: ",
        ),
    ],
)
def test_bad_query_parameter_is_400(
    api: APIClient, schedules: dict[str, str], raw: str, message: str
) -> None:
    response = api.get(URL, {"query": raw})
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
