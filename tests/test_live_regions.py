"""The console's live regions (the instances list, an instance page) poll the server; a poll
that would show what the page already shows is answered 204 and not swapped, so a screen
reader does not read the region again and the keyboard focus stays where it was."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

import workflows
from workflows import workflow
from workflows.roles import OPERATORS
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

LIST = reverse("workflows:instance_list")


@workflow("live-regions-test")
def waits(event, step):
    step.do("prepare", lambda: "ready")
    return step.wait_for_event("go", type="go", timeout="1 hour")


@pytest.fixture
def operator(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="op", password="pw")
    user.groups.set(Group.objects.filter(name=OPERATORS))
    client = Client()
    client.force_login(user)
    return client


def seen(response) -> str:
    """The fingerprint the page's polling element sends back (its hx-headers)."""
    return re.search(r'"X-Durable-Seen": "([0-9a-f]+)"', response.content.decode()).group(1)


def poll(client: Client, url: str, target: str, fingerprint: str):
    return client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET=target, HTTP_X_DURABLE_SEEN=fingerprint)


def test_an_unchanged_instances_list_is_not_swapped_and_a_changed_one_is(operator):
    inst = workflows.create("live-regions-test")
    run_until_idle()
    page = operator.get(LIST)
    assert poll(operator, LIST, "instance-rows", seen(page)).status_code == 204
    inst.send_event("go", {})
    run_until_idle()
    changed = poll(operator, LIST, "instance-rows", seen(page))
    assert changed.status_code == 200
    assert "complete" in changed.content.decode()
    assert seen(changed) != seen(page)


def test_an_unchanged_instance_page_is_not_swapped_though_its_age_grows(operator):
    inst = workflows.create("live-regions-test")
    run_until_idle()
    url = reverse("workflows:instance_detail", args=[inst.id])
    page = operator.get(url)
    workflows.clock.shift(workflows.definition.parse_duration("5 minutes"))
    assert poll(operator, url, "instance-live", seen(page)).status_code == 204
    inst.send_event("go", {})
    run_until_idle()
    assert poll(operator, url, "instance-live", seen(page)).status_code == 200


def test_a_poll_without_a_fingerprint_gets_the_partial(operator):
    workflows.create("live-regions-test")
    response = operator.get(LIST, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="instance-rows")
    assert response.status_code == 200
    assert 'id="instance-rows"' in response.content.decode()
