"""API tokens: `manage.py workflows token create|list|revoke`, how a request presents one,
and when its last use is recorded."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from workflows.api.tokens import LAST_USED_RESOLUTION
from workflows.models import ApiToken
from workflows.roles import VIEWERS

pytestmark = pytest.mark.django_db

WORKFLOWS = "/api/v1/workflows"


def cli(*args: str) -> str:
    out = StringIO()
    call_command("workflows", "token", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def ann(django_user_model):
    user = django_user_model.objects.create_user(username="ann")
    user.groups.set(Group.objects.filter(name=VIEWERS))
    return user


def get(path: str, token: str | None = None, *, authorization: str | None = None):
    if token is not None:
        authorization = f"Bearer {token}"
    return Client(headers={"Authorization": authorization} if authorization else {}).get(path)


def test_token_create_prints_the_token_alone_on_one_line_and_stores_only_its_hash(ann):
    printed = cli("create", "ann", "--name", "ci")
    token = printed.removesuffix("\n")
    assert "\n" not in token and token.startswith("dur_") and len(token) > 40
    row = ApiToken.objects.get(name="ci")
    assert row.user == ann
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.name, row.prefix, row.key_hash}
    assert token.startswith(row.prefix)


def test_a_created_token_acts_as_its_user(ann):
    token = cli("create", "ann").strip()
    assert get(WORKFLOWS, token).status_code == 200


def test_without_a_name_a_token_is_labelled_by_its_prefix(ann):
    token = cli("create", "ann").strip()
    assert ApiToken.objects.get().name == token[:12]


def test_token_create_refuses_an_unknown_user_and_a_label_taken_in_one_line(ann):
    with pytest.raises(CommandError, match="^no user named 'bob'$"):
        cli("create", "bob")
    cli("create", "ann", "--name", "ci")
    with pytest.raises(CommandError, match="^'ann' already has a token named 'ci': choose another --name$"):
        cli("create", "ann", "--name", "ci")
    assert ApiToken.objects.count() == 1


@pytest.mark.parametrize("name", ["fake\nadmin-ci  root  dur_ABCDEFGH", "\x1b[31mRED\x1b[0m", "tab\there"])
def test_a_token_name_with_a_control_character_is_refused_so_token_list_prints_no_forged_row(ann, name):
    from workflows.api.tokens import create_token

    with pytest.raises(ValueError, match="contains a line break, tab or other control character"):
        create_token(username="ann", name=name)
    assert not ApiToken.objects.exists()


def test_token_list_shows_name_user_prefix_created_and_last_use_but_never_the_secret(ann):
    used = cli("create", "ann", "--name", "deploy-bot").strip()
    unused = cli("create", "ann", "--name", "spare").strip()
    get(WORKFLOWS, used)
    listing = cli("list")
    header, *lines = listing.splitlines()
    assert header.split() == ["NAME", "USER", "PREFIX", "CREATED", "LAST", "USED"]
    by_name = {line.split()[0]: line.split() for line in lines}
    assert by_name["deploy-bot"][1:3] == ["ann", used[:12]]
    assert by_name["deploy-bot"][4].startswith(str(timezone.now().year))
    assert by_name["spare"][4] == "never"
    assert used not in listing and unused not in listing


def test_token_list_says_when_there_is_none():
    assert cli("list").strip() == "no API tokens"


def test_a_revoked_token_is_refused_from_then_on(ann):
    token = cli("create", "ann", "--name", "old").strip()
    assert get(WORKFLOWS, token).status_code == 200
    assert cli("revoke", "old").strip() == "revoked old"
    response = get(WORKFLOWS, token)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "NotAuthenticated"
    assert not ApiToken.objects.exists()


def test_revoking_an_unknown_label_is_one_line_and_changes_nothing(ann):
    cli("create", "ann", "--name", "kept")
    with pytest.raises(CommandError, match="^no token named 'gone' "):
        cli("revoke", "gone")
    assert ApiToken.objects.filter(name="kept").exists()


def test_a_request_records_when_its_token_was_last_used(ann):
    token = cli("create", "ann", "--name", "ci").strip()
    assert ApiToken.objects.get().last_used_at is None
    before = timezone.now()
    get(WORKFLOWS, token)
    assert ApiToken.objects.get().last_used_at >= before


def test_a_token_used_again_within_a_minute_is_not_written_again(ann):
    token = cli("create", "ann", "--name", "ci").strip()
    recent = timezone.now() - LAST_USED_RESOLUTION + timedelta(seconds=5)
    ApiToken.objects.update(last_used_at=recent)
    get(WORKFLOWS, token)
    assert ApiToken.objects.get().last_used_at == recent


def test_a_token_used_again_after_a_minute_records_the_new_use(ann):
    token = cli("create", "ann", "--name", "ci").strip()
    earlier = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=1)
    ApiToken.objects.update(last_used_at=earlier)
    get(WORKFLOWS, token)
    assert ApiToken.objects.get().last_used_at > earlier + LAST_USED_RESOLUTION


@pytest.mark.parametrize(
    "authorization",
    [
        "Token {token}",  # another scheme
        "Basic {token}",
        "Bearer",
        "Bearer ",
        "Bearer dur_not-a-token",
        "Bearer {token}x",
        "Bearer " + "dur_" + "x" * 5000,
        "Bearer \x00",
        "Bearer é",
    ],
)
def test_anything_but_a_valid_bearer_token_is_401_naming_the_bearer_scheme(ann, authorization):
    token = cli("create", "ann").strip()
    response = get(WORKFLOWS, authorization=authorization.format(token=token))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "NotAuthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_token_is_401_saying_how_to_get_one(ann):
    response = get(WORKFLOWS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="durable"'
    assert "token create" in response.json()["error"]["message"]


def test_the_bearer_scheme_is_case_insensitive(ann):
    token = cli("create", "ann").strip()
    assert get(WORKFLOWS, authorization=f"bearer {token}").status_code == 200


def test_the_token_of_an_inactive_user_is_refused_and_not_counted_as_used(ann):
    token = cli("create", "ann").strip()
    ann.is_active = False
    ann.save()
    assert get(WORKFLOWS, token).status_code == 401
    assert ApiToken.objects.get().last_used_at is None


def test_a_signed_in_session_without_a_token_is_refused(ann, client):
    client.force_login(ann)
    assert client.get("/").status_code == 200  # the console takes the session
    assert client.get(WORKFLOWS).status_code == 401  # the API does not


def test_two_users_may_name_a_token_alike_and_revoke_then_says_whose(ann, django_user_model):
    django_user_model.objects.create_user(username="bo")
    cli("create", "ann", "--name", "ci")
    cli("create", "bo", "--name", "ci")
    with pytest.raises(CommandError, match="^several users have a token named 'ci': say whose with --user"):
        cli("revoke", "ci")
    assert cli("revoke", "ci", "--user", "bo").strip() == "revoked ci"
    assert [token.user.username for token in ApiToken.objects.all()] == ["ann"]
    assert cli("revoke", "ci").strip() == "revoked ci"  # the only one left of that name
