"""Human approvals: request_approval in a workflow, decide() and the inbox."""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse

import approvals
import workflows
from approvals import AlreadyDecided, RequestCancelled, RequestExpired, request_approval
from approvals.models import ApprovalRequest
from approvals.selectors import pending_for_user
from approvals.services import create_request
from workflows import WaitTimeout, workflow
from workflows.models import Instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

REFUND_APPROVERS = ["group:finance", "user:alice"]


@workflow("approvals-test-refund")
def refund_flow(event, step):
    params = event.payload or {}
    try:
        decision = request_approval(
            step,
            params.get("name", "refund sign-off"),
            title=params.get("title", "Refund 420 EUR for order 42?"),
            details={"order": 42, "amount": "420.00"},
            approvers=params.get("approvers", REFUND_APPROVERS),
            timeout="3 days",
        )
    except WaitTimeout as exc:
        return {"timed_out": str(exc)}
    return {"decision": decision}


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def make_user(db):
    approvers_group = Group.objects.get(name="Approvers")

    def make(username, *, groups=(), email=None, approver=True, superuser=False):
        user = User.objects.create_user(
            username,
            email=f"{username}@example.com" if email is None else email,
            password="secret",
            is_superuser=superuser,
        )
        if approver:
            user.groups.add(approvers_group)
        for name in groups:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        return user

    return make


@pytest.fixture
def alice(make_user):
    """Named in the refund request."""
    return make_user("alice")


@pytest.fixture
def fred(make_user):
    """In the finance group, named in the refund request."""
    return make_user("fred", groups=["finance"])


@pytest.fixture
def mallory(make_user):
    """An approver, but not one of this request's."""
    return make_user("mallory", groups=["ops"])


@pytest.fixture
def root(make_user):
    return make_user("root", approver=False, superuser=True)


@pytest.fixture
def start():
    """Start a refund workflow and run it until it waits; return (instance, request)."""

    def start_refund(**params):
        inst = workflows.create("approvals-test-refund", params=params)
        run_until_idle()
        return inst, ApprovalRequest.objects.get(instance_id=inst.id)

    return start_refund


@pytest.fixture
def waiting(start, alice, fred, mallory):
    return start()


def htmx_post(client, url, data):
    return client.post(url, data, headers={"HX-Request": "true"})


# --- request_approval ----------------------------------------------------------------


def test_the_request_is_created_once_and_the_instance_waits_holding_no_worker(waiting):
    inst, request = waiting
    assert inst.status()["status"] == "waiting"
    advance("1 day")
    assert inst.status()["status"] == "waiting"
    assert ApprovalRequest.objects.count() == 1
    assert request.instance_id == inst.id
    assert request.name == "refund sign-off"
    assert request.title == "Refund 420 EUR for order 42?"
    assert request.details == {"order": 42, "amount": "420.00"}
    assert request.approvers == REFUND_APPROVERS
    assert request.status == "pending"
    assert request.deadline - request.created_at == timedelta(days=3)


def test_approving_resumes_the_instance_with_the_decision(waiting, alice):
    inst, request = waiting
    approvals.decide(request.pk, approved=True, user=alice, comment="fine by me")
    run_until_idle()
    request.refresh_from_db()
    assert inst.status()["status"] == "complete"
    assert inst.status()["output"] == {
        "decision": {
            "approved": True,
            "by": "alice",
            "comment": "fine by me",
            "decided_at": request.decided_at.isoformat(),
        }
    }
    assert datetime.fromisoformat(inst.status()["output"]["decision"]["decided_at"]) == request.decided_at
    assert (request.status, request.decided_by, request.comment) == ("approved", alice, "fine by me")


def test_rejecting_by_username_resumes_the_instance_with_a_rejection(waiting, fred):
    inst, request = waiting
    approvals.decide(request.pk, approved=False, user="fred")
    run_until_idle()
    decision = inst.status()["output"]["decision"]
    assert (decision["approved"], decision["by"], decision["comment"]) == (False, "fred", "")
    request.refresh_from_db()
    assert (request.status, request.decided_by_username) == ("rejected", "fred")


@pytest.mark.parametrize("who", ["alice", "fred", "root"])
def test_named_users_group_members_and_superusers_may_decide(waiting, root, who):
    inst, request = waiting
    approvals.decide(request.pk, approved=True, user=who)
    run_until_idle()
    assert inst.status()["output"]["decision"]["by"] == who


def test_someone_not_among_the_approvers_may_not_decide_and_is_not_told_who_may(waiting, mallory):
    inst, request = waiting
    with pytest.raises(
        PermissionDenied, match="mallory may not decide .*: they are not one of its approvers"
    ) as refused:
        approvals.decide(request.pk, approved=True, user=mallory)
    assert "finance" not in str(refused.value) and "alice" not in str(refused.value)
    run_until_idle()
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("pending", None)
    assert inst.status()["status"] == "waiting"


def test_an_inactive_named_user_may_not_decide(waiting, alice):
    _, request = waiting
    alice.is_active = False
    alice.save()
    with pytest.raises(PermissionDenied):
        approvals.decide(request.pk, approved=True, user=alice)


def test_a_second_decision_is_refused_with_a_clear_message_and_changes_nothing(waiting, alice, fred):
    inst, request = waiting
    approvals.decide(request.pk, approved=True, user=alice, comment="ok")
    with pytest.raises(AlreadyDecided, match=r"already approved by alice at \d{4}-"):
        approvals.decide(request.pk, approved=False, user=fred, comment="no!")
    run_until_idle()
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.comment) == ("approved", alice, "ok")
    assert inst.status()["output"]["decision"]["approved"] is True


def test_the_timeout_raises_wait_timeout_in_the_workflow_and_expires_the_request(waiting, alice):
    inst, request = waiting
    advance("3 days")
    output = inst.status()["output"]
    assert 'approval "refund sign-off"' in output["timed_out"]
    assert "3 days" in output["timed_out"]
    request.refresh_from_db()
    assert request.status == "expired"
    with pytest.raises(RequestExpired, match="expired"):
        approvals.decide(request.pk, approved=True, user=alice)


def test_a_request_past_its_deadline_cannot_be_decided_even_before_the_workflow_notices(waiting, alice):
    inst, request = waiting
    ApprovalRequest.objects.filter(pk=request.pk).update(deadline=request.created_at)
    with pytest.raises(RequestExpired):
        approvals.decide(request.pk, approved=True, user=alice)
    assert inst.status()["status"] == "waiting"


def test_creating_the_request_again_after_a_crash_reuses_the_pending_one():
    arguments = dict(
        instance_id="crashed-1",
        request_name="sign-off",
        title="Ship it?",
        details={},
        approvers=["user:alice"],
        timeout_seconds=60,
    )
    first = create_request(**arguments)
    second = create_request(**arguments)
    assert first == second
    assert ApprovalRequest.objects.filter(instance_id="crashed-1").count() == 1


def test_a_later_request_with_the_same_name_is_a_new_one_once_the_first_is_decided(waiting, alice):
    inst, request = waiting
    approvals.decide(request.pk, approved=True, user=alice)
    arguments = dict(
        instance_id=inst.id,
        request_name="refund sign-off",
        title="Again?",
        details={},
        approvers=["user:alice"],
        timeout_seconds=60,
    )
    assert create_request(**arguments) != request.pk


def test_the_approvers_are_emailed_a_link_to_the_request(start, alice, fred, make_user, mailoutbox, settings):
    settings.DURABLE_BASE_URL = "https://durable.example.com/"
    make_user("nomail", groups=["finance"], email="")
    make_user("bystander", email="bystander@example.com")
    inst, request = start()
    advance("1 hour")  # replays do not send again
    assert sorted(message.to[0] for message in mailoutbox) == ["alice@example.com", "fred@example.com"]
    assert all(len(message.to) == 1 for message in mailoutbox)
    message = mailoutbox[0]
    assert message.subject == "Approval needed: Refund 420 EUR for order 42?"
    assert f"https://durable.example.com/approvals/{request.pk}/" in message.body
    assert "amount: 420.00" in message.body


def test_without_a_base_url_setting_the_email_links_to_the_development_site(
    start, alice, mailoutbox, settings
):
    del settings.DURABLE_BASE_URL  # a host project that never set it
    inst, request = start()
    assert f"http://127.0.0.1:8000/approvals/{request.pk}/" in mailoutbox[0].body


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"approvers": []}, "approvers must be a non-empty list"),
        ({"approvers": "user:alice"}, "approvers must be a non-empty list"),
        ({"approvers": ["alice"]}, '"user:NAME" or "group:NAME"'),
        ({"approvers": ["user:"]}, '"user:NAME" or "group:NAME"'),
        ({"title": "  "}, "title must be a non-empty string"),
        ({"details": {"when": object()}}, "details must be JSON"),
        ({"timeout": "soon"}, "timeout: invalid duration 'soon'"),
        ({"timeout": 0}, "timeout must be longer than zero"),
        ({"name": ""}, "name must be a string of 1-200 characters"),
        ({"name": "x" * 201}, "name must be a string of 1-200 characters"),
        ({"name": "sign\x00off"}, r"name 'sign\\x00off' contains a NUL character"),
        ({"name": "sign\udc80off"}, r"name 'sign\\udc80off' contains a lone surrogate"),
        ({"title": "Ship\x00 it?"}, r"title 'Ship\\x00 it\?' contains a NUL character"),
        ({"title": "Ship it\ud800"}, "title .* contains a lone surrogate"),
        (
            {"details": {"note": "a\x00b"}},
            r"details hold the text 'a\\x00b', which contains a NUL character",
        ),
        ({"details": {"k\x00": 1}}, r"details hold the text 'k\\x00', which contains a NUL character"),
        ({"details": ["\udfff"]}, "details hold the text .* lone surrogate"),
        ({"details": {"n": float("nan")}}, "details must be JSON"),
        ({"details": _nested(5000)}, "details are nested more than 100 levels deep"),
        ({"approvers": ["user:al\x00ice"]}, r"approver 'user:al\\x00ice' contains a NUL character"),
        ({"approvers": ["group:\ud800"]}, "approver .* contains a lone surrogate"),
        ({"approvers": ["user:" + "a" * 200]}, "strings of at most 200 characters"),
    ],
)
def test_bad_arguments_to_request_approval_raise_a_clear_value_error(arguments, message):
    call = {"name": "sign-off", "title": "Ship it?", "approvers": ["user:alice"], **arguments}
    name = call.pop("name")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        request_approval(object(), name, **call)


def test_bad_arguments_error_the_instance_and_create_no_request(start):
    inst = workflows.create("approvals-test-refund", params={"approvers": ["finance"]})
    run_until_idle()
    assert inst.status()["status"] == "errored"
    assert inst.status()["error"]["type"] == "ValueError"
    assert "approvers must be a non-empty list" in inst.status()["error"]["message"]
    assert not ApprovalRequest.objects.exists()


def test_terminating_the_instance_cancels_its_pending_request(waiting, alice):
    inst, request = waiting
    inst.terminate()
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("cancelled", None)
    assert pending_for_user(user=alice) == []
    with pytest.raises(RequestCancelled, match="no longer waits"):
        approvals.decide(request.pk, approved=True, user=alice)


def test_a_decision_for_an_instance_that_stopped_waiting_is_refused_and_the_request_cancelled(waiting, alice):
    inst, request = waiting
    # The instance went away without telling (deleted from the database).
    Instance.objects.filter(pk=inst.id).delete()
    with pytest.raises(RequestCancelled, match=f'instance "{inst.id}" is no longer waiting'):
        approvals.decide(request.pk, approved=True, user=alice)
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("cancelled", None)


def test_decide_rejects_an_unknown_request_or_user(waiting):
    _, request = waiting
    with pytest.raises(ValueError, match="no approval request with id 999"):
        approvals.decide(999, approved=True, user="alice")
    with pytest.raises(ValueError, match="no user named 'nobody'"):
        approvals.decide(request.pk, approved=True, user="nobody")
    with pytest.raises(ValueError, match="approved must be True or False"):
        approvals.decide(request.pk, approved="yes", user="alice")
    with pytest.raises(ValueError, match=r"no user named 'al\\x00ice': the name contains a NUL character"):
        approvals.decide(request.pk, approved=True, user="al\x00ice")


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        ("fine\x00by me", r"the comment contains a NUL character \(\\u0000\), which cannot be stored"),
        ("fine \ud800", r"the comment contains a lone surrogate \(invalid Unicode\)"),
        ("x" * 5001, "comment must be a string of at most 5000 characters"),
    ],
)
def test_a_comment_no_database_can_store_is_refused_and_changes_nothing(waiting, alice, comment, message):
    inst, request = waiting
    with pytest.raises(ValueError, match=message):
        approvals.decide(request.pk, approved=True, user=alice, comment=comment)
    request.refresh_from_db()
    assert (request.status, request.comment) == ("pending", "")
    run_until_idle()
    assert inst.status()["status"] == "waiting"


def test_the_approvers_group_may_decide_approval_requests():
    group = Group.objects.get(name="Approvers")
    assert list(group.permissions.values_list("codename", flat=True)) == ["decide_approvalrequest"]


# --- the inbox -----------------------------------------------------------------------


def test_the_inbox_requires_signing_in(client):
    response = client.get(reverse("approvals:inbox"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_user_without_the_approver_permission_is_forbidden(client, make_user, waiting):
    _, request = waiting
    client.force_login(make_user("outsider", approver=False))
    assert client.get(reverse("approvals:inbox")).status_code == 403
    assert client.get(reverse("approvals:detail", args=[request.pk])).status_code == 403
    response = client.post(reverse("approvals:decide", args=[request.pk]), {"approved": "yes"})
    assert response.status_code == 403


def test_the_inbox_lists_only_requests_the_user_may_decide_newest_first(client, start, alice, mallory):
    inst, _ = start(title="Older refund")
    start(title="Newer refund", approvers=["user:alice"])
    start(title="Ops only", approvers=["group:ops"])
    client.force_login(alice)
    response = client.get(reverse("approvals:inbox"))
    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["nav"] == "approvals"
    assert "Ops only" not in content
    assert content.index("Newer refund") < content.index("Older refund")
    assert reverse("workflows:instance_detail", args=[inst.id]) in content
    assert "amount" in content and "420.00" in content
    assert "left" in content


def test_approving_with_htmx_returns_the_card_and_resumes_the_instance(client, waiting, alice):
    inst, request = waiting
    client.force_login(alice)
    response = htmx_post(
        client, reverse("approvals:decide", args=[request.pk]), {"approved": "yes", "comment": "go ahead"}
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert [t.name for t in response.templates] == ["approvals/_request_card.html"]
    assert content.lstrip().startswith(f'<li id="approval-{request.pk}"')
    assert "Approved by you</strong> · go ahead" in content
    assert "<form" not in content
    run_until_idle()
    assert inst.status()["output"]["decision"]["approved"] is True


def test_without_javascript_the_form_redirects_to_the_inbox_with_a_message(client, waiting, fred):
    inst, request = waiting
    client.force_login(fred)
    response = client.post(reverse("approvals:decide", args=[request.pk]), {"approved": "no"}, follow=True)
    assert response.redirect_chain == [(reverse("approvals:inbox"), 302)]
    assert "Rejected: Refund 420 EUR for order 42?" in response.content.decode()
    run_until_idle()
    assert inst.status()["output"]["decision"]["approved"] is False


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/approvals/?tab=history", "/approvals/?tab=history"),
        ("https://evil.example/", "/approvals/"),
        ("inbox", "inbox"),  # a relative address, not the name of a view
        ("", "/approvals/"),
    ],
)
def test_without_javascript_the_form_returns_only_to_a_page_of_this_site(
    client, waiting, fred, next_url, lands_on
):
    _, request = waiting
    client.force_login(fred)
    response = client.post(
        reverse("approvals:decide", args=[request.pk]), {"approved": "no", "next": next_url}
    )
    assert (response.status_code, response["Location"]) == (302, lands_on)


def test_a_refused_second_decision_shows_the_error_inline(client, waiting, alice, fred):
    _, request = waiting
    approvals.decide(request.pk, approved=True, user=fred)
    client.force_login(alice)
    response = htmx_post(client, reverse("approvals:decide", args=[request.pk]), {"approved": "no"})
    content = response.content.decode()
    assert response.status_code == 422  # base.html's htmx-config swaps 422 in
    assert "already approved by fred" in content
    assert "Approved by fred" in content
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("approved", fred)


# A 403 for someone else's request beside a 404 for a missing one would tell anyone with
# the inbox which request ids exist.
def test_a_request_someone_may_not_decide_is_the_same_404_as_one_that_does_not_exist(
    client, waiting, mallory
):
    _, request = waiting
    client.force_login(mallory)
    missing = request.pk + 1000
    for pk in (request.pk, missing):
        detail = client.get(reverse("approvals:detail", args=[pk]))
        plain = client.post(reverse("approvals:decide", args=[pk]), {"approved": "yes"})
        htmx = htmx_post(client, reverse("approvals:decide", args=[pk]), {"approved": "yes"})
        assert [detail.status_code, plain.status_code, htmx.status_code] == [404, 404, 404]
        assert b"420.00" not in detail.content + plain.content + htmx.content
    assert client.get(reverse("approvals:detail", args=[request.pk])).content == (
        client.get(reverse("approvals:detail", args=[missing])).content
    )
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_a_comment_with_a_nul_character_is_refused_inline_and_changes_nothing(client, waiting, alice):
    inst, request = waiting
    client.force_login(alice)
    response = htmx_post(
        client, reverse("approvals:decide", args=[request.pk]), {"approved": "yes", "comment": "ok\x00"}
    )
    assert response.status_code == 422
    assert "the comment contains a NUL character" in response.content.decode()
    request.refresh_from_db()
    assert (request.status, request.comment) == ("pending", "")
    run_until_idle()
    assert inst.status()["status"] == "waiting"


def test_a_decision_without_approve_or_reject_is_refused_inline(client, waiting, alice):
    _, request = waiting
    client.force_login(alice)
    response = htmx_post(client, reverse("approvals:decide", args=[request.pk]), {"approved": "maybe"})
    assert response.status_code == 422
    assert "Choose" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_the_history_tab_lists_decided_requests(client, start, alice, fred):
    _, decided = start(title="Decided refund")
    start(title="Still open refund")
    approvals.decide(decided.pk, approved=True, user=fred, comment="checked the invoice")
    client.force_login(alice)
    response = client.get(reverse("approvals:inbox") + "?tab=history")
    content = response.content.decode()
    assert response.status_code == 200
    assert [r.pk for r in response.context["history"]] == [decided.pk]
    assert "Decided refund" in content and "Still open refund" not in content
    assert "fred" in content and "checked the invoice" in content and "Approved" in content


def test_the_detail_page_shows_the_request_to_its_approvers_only(client, waiting, alice, mallory):
    inst, request = waiting
    client.force_login(alice)
    response = client.get(reverse("approvals:detail", args=[request.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Refund 420 EUR for order 42?" in content
    assert "group:finance, user:alice" in content
    assert reverse("workflows:instance_detail", args=[inst.id]) in content
    assert f'name="next" value="{reverse("approvals:detail", args=[request.pk])}"' in content
    client.force_login(mallory)
    assert client.get(reverse("approvals:detail", args=[request.pk])).status_code == 404


def test_a_post_without_the_csrf_token_is_refused(waiting, alice):
    _, request = waiting
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = htmx_post(client, reverse("approvals:decide", args=[request.pk]), {"approved": "yes"})
    assert response.status_code == 403
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_decide_accepts_only_post(client, waiting, alice):
    _, request = waiting
    client.force_login(alice)
    assert client.get(reverse("approvals:decide", args=[request.pk])).status_code == 405


def test_someone_named_in_a_request_follows_the_email_link_and_decides_without_the_group(
    client, make_user, start
):
    carol = make_user("carol", approver=False)
    inst, request = start(approvers=["user:carol"])
    client.force_login(carol)
    assert client.get(reverse("approvals:detail", args=[request.pk])).status_code == 200
    assert "Refund 420 EUR" in client.get(reverse("approvals:inbox")).content.decode()
    response = htmx_post(client, reverse("approvals:decide", args=[request.pk]), {"approved": "yes"})
    assert response.status_code == 200
    run_until_idle()
    assert inst.status()["output"]["decision"]["by"] == "carol"
