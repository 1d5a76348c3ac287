"""The front page `/`: where a newcomer finds the admin, the API docs and the examples."""

from __future__ import annotations

import pytest
from django.test import Client

API = "/rest-api/enterprise-interface/v1.0"


def test_front_page_links_the_admin_the_api_docs_and_the_examples(client: Client) -> None:
    # No login, and no django_db mark: the page reads nothing from the database.
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert 'href="/admin/" id="link-admin"' in page
    assert f'href="{API}/docs/" id="link-api-docs"' in page
    assert f'href="{API}/schema/"' in page
    assert "“API examples” of <code>README.md</code>" in page
    assert f'curl -u "demo:$SECRET" "http://testserver{API}/events?count=2"' in page


def test_front_page_only_answers_get_and_head(client: Client) -> None:
    assert client.head("/").status_code == 200
    assert client.post("/").status_code == 405


@pytest.mark.django_db
def test_admins_view_site_link_leads_to_the_front_page(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert '<a href="/">View site</a>' in page
