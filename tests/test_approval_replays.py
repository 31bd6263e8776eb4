"""request_approval is memoised: however often the instance is replayed, the request is
created once and the approvers are emailed once."""

from collections import Counter

import pytest
from django.contrib.auth.models import Group, User

import approvals
import workflows
from approvals import request_approval
from approvals.models import ApprovalRequest
from workflows import workflow
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

replays: Counter[str] = Counter()
shipping_calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset():
    replays.clear()
    shipping_calls.clear()


def fail_the_first_time(instance_id: str) -> str:
    shipping_calls[instance_id] += 1
    if shipping_calls[instance_id] == 1:
        raise ConnectionError("the shipping service is down")
    return "shipped"


@workflow("approval-replays-test-release")
def release(event, step):
    replays[step.instance_id] += 1  # counts runs of the workflow function, not a step
    decision = request_approval(
        step,
        "release sign-off",
        title="Ship release 1.0?",
        details={"release": "1.0"},
        approvers=["user:alice", "group:release-managers"],
        timeout="3 days",
    )
    step.sleep("cool-off", "1 hour")
    shipped = step.do(
        "ship", fail_the_first_time, step.instance_id, retries={"limit": 1, "delay": "1 minute"}
    )
    return {"approved": decision["approved"], "shipped": shipped}


@pytest.fixture
def approvers():
    User.objects.create_user("alice", email="alice@example.com")
    bob = User.objects.create_user("bob", email="bob@example.com")
    bob.groups.add(Group.objects.create(name="release-managers"))


def test_the_approvers_are_emailed_once_however_often_the_instance_is_replayed(approvers, mailoutbox):
    inst = workflows.create("approval-replays-test-release")
    run_until_idle()
    assert sorted(message.to[0] for message in mailoutbox) == ["alice@example.com", "bob@example.com"]

    inst.pause()  # while it waits for the decision
    inst.resume()
    run_until_idle()
    advance("1 day")
    request = ApprovalRequest.objects.get(instance_id=inst.id)
    approvals.decide(request.pk, approved=True, user="alice")
    run_until_idle()
    inst.pause()  # while it sleeps after the decision
    inst.resume()
    run_until_idle()
    advance("1 hour")  # the shipping step fails once and waits out its retry delay
    advance("1 minute")

    assert inst.status() == {
        "status": "complete",
        "output": {"approved": True, "shipped": "shipped"},
        "error": None,
    }
    assert replays[inst.id] >= 6  # the scenario above did replay it
    assert ApprovalRequest.objects.filter(instance_id=inst.id).count() == 1
    assert sorted(message.to[0] for message in mailoutbox) == ["alice@example.com", "bob@example.com"]
