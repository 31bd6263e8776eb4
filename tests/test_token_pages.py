"""The API tokens page: a signed-in user creates a token (shown once), lists and revokes
their own tokens, and never sees or revokes anyone else's."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from workflows.api.tokens import create_token, hash_token
from workflows.models import ApiToken

pytestmark = pytest.mark.django_db

TOKENS = reverse("workflows:token_list")
REVOKE = reverse("workflows:token_revoke")


@pytest.fixture
def alice(django_user_model) -> Client:
    django_user_model.objects.create_user(username="alice", password="pw")
    client = Client()
    client.login(username="alice", password="pw")
    return client


@pytest.fixture
def bob_token(django_user_model) -> ApiToken:
    django_user_model.objects.create_user(username="bob", password="pw")
    row, _ = create_token(username="bob", name="bob-deploys")
    return row


def test_the_tokens_page_needs_a_login(client):
    response = client.get(TOKENS)
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(alice):
    response = alice.post(TOKENS, {"name": "billing-cron"})
    assert response.status_code == 200
    secret = response.context["created"]["secret"]
    assert secret.startswith("dur_") and secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    row = ApiToken.objects.get(name="billing-cron")
    assert row.user.username == "alice" and row.key_hash == hash_token(secret)
    again = alice.get(TOKENS).content.decode()
    assert "billing-cron" in again and secret not in again
    assert row.prefix in again  # told apart by its first characters


def test_a_token_works_on_the_api_at_once(alice):
    secret = alice.post(TOKENS, {"name": "ci"}).context["created"]["secret"]
    response = Client().get("/api/v1/workflows", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code != 401


def test_a_token_without_a_name_is_named_by_its_prefix(alice):
    response = alice.post(TOKENS, {"name": ""})
    created = response.context["created"]
    assert created["secret"].startswith(created["name"])


def test_a_name_one_already_has_is_refused_clearly_and_nothing_is_created(alice):
    alice.post(TOKENS, {"name": "deploys"})
    response = alice.post(TOKENS, {"name": "deploys"})
    assert response.status_code == 422
    assert "already has a token named" in response.content.decode()
    assert ApiToken.objects.count() == 1


def test_another_users_token_name_is_free_so_creating_one_tells_nothing_about_theirs(alice, bob_token):
    response = alice.post(TOKENS, {"name": "bob-deploys"})
    assert response.status_code == 200
    assert ApiToken.objects.filter(name="bob-deploys").count() == 2
    alice.post(REVOKE, {"name": "bob-deploys"})
    assert ApiToken.objects.get(name="bob-deploys").user.username == "bob"  # hers went, his stayed


def test_a_name_too_long_is_refused_clearly(alice):
    response = alice.post(TOKENS, {"name": "x" * 101})
    assert response.status_code == 422
    assert "at most 100 characters" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_list_shows_only_ones_own_tokens(alice, bob_token):
    alice.post(TOKENS, {"name": "alice-laptop"})
    html = alice.get(TOKENS).content.decode()
    assert "alice-laptop" in html and "bob-deploys" not in html


def test_revoking_ones_own_token_deletes_it(alice):
    alice.post(TOKENS, {"name": "old"})
    response = alice.post(REVOKE, {"name": "old"}, follow=True)
    assert not ApiToken.objects.filter(name="old").exists()
    assert escape('Token "old" revoked') in response.content.decode()


def test_another_users_token_cannot_be_revoked(alice, bob_token):
    response = alice.post(REVOKE, {"name": "bob-deploys"}, follow=True)
    assert ApiToken.objects.filter(pk=bob_token.pk).exists()
    assert "You have no token named" in response.content.decode()


def test_revoke_needs_a_post(alice):
    assert alice.get(REVOKE).status_code == 405


def test_the_console_links_to_the_tokens_page(alice, django_user_model):
    user = django_user_model.objects.get(username="alice")
    user.is_superuser = True
    user.save()
    assert f'href="{TOKENS}"' in alice.get(reverse("workflows:instance_list")).content.decode()


def test_the_tokens_page_takes_get_and_post_only(alice):
    assert alice.put(TOKENS).status_code == 405
    assert alice.delete(TOKENS).status_code == 405
