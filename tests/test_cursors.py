"""Page cursors and time filters with odd time zones: refused or normalised, never a 500
(PostgreSQL refuses a UTC offset beyond 15:59, which Python allows)."""

import base64

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

import workflows
from workflows.api.tokens import create_token
from workflows.roles import OPERATORS

pytestmark = pytest.mark.django_db

LIST = reverse("workflows:instance_list")


@pytest.fixture
def api(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="olga")
    user.groups.set(Group.objects.filter(name=OPERATORS))
    _, token = create_token(username="olga")
    return Client(headers={"Authorization": f"Bearer {token}"}, raise_request_exception=False)


@pytest.fixture
def console(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="oscar", password="pw")
    user.groups.set(Group.objects.filter(name=OPERATORS))
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def opaque(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


@pytest.mark.parametrize("offset", ["+23:59", "+16:00", "-23:59:59.999999"])
def test_an_api_cursor_with_an_offset_beyond_what_the_database_holds_is_read_in_utc(api, offset):
    response = api.get("/api/v1/instances", {"cursor": opaque(f"2020-01-01T00:00:00{offset}|abc")})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("cursor", ["0001-01-01T00:00:00+14:00|abc", "9999-12-31T23:59:59-14:00|abc"])
def test_an_api_cursor_outside_the_years_of_utc_is_a_422(api, cursor):
    response = api.get("/api/v1/instances", {"cursor": opaque(cursor)})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InvalidRequest"


def test_the_consoles_page_link_and_time_filter_with_such_offsets_are_read_in_utc(console):
    workflows.create("order-fulfilment", params={"order_id": 1}, id="o-1")
    assert console.get(LIST, {"after": "2020-01-01T00:00:00+23:59|abc"}).status_code == 200
    response = console.get(LIST, {"created_after": "2020-01-01T00:00:00+23:59"})
    assert response.status_code == 200
    assert b"o-1" in response.content


@pytest.mark.parametrize("after", ["0001-01-01T00:00:00+14:00|abc", "9999-12-31T23:59:59-14:00|abc"])
def test_a_bulk_action_with_a_cursor_outside_the_years_of_utc_is_refused_not_a_500(console, after):
    response = console.post(reverse("workflows:bulk_all"), {"action": "pause", "after": after, "query": ""})
    assert response.status_code == 422
    assert b"The batch cursor is broken: start the bulk action again." in response.content
