"""The demo workflows `make run` starts: each shows off one capability, and works."""

import pytest
from django.contrib.auth.models import User

import approvals
import workflows
from approvals.models import ApprovalRequest
from workflows.models import Instance, Step
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db


def test_an_order_is_charged_then_waits_for_a_manager_and_ships_when_approved():
    inst = workflows.create("order-fulfilment", params={"order_id": 42, "payment_failure_rate": 0})
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    request = ApprovalRequest.objects.get(instance_id=inst.id)
    assert request.title == "Ship order 42 (42.00 EUR)?"
    assert request.approvers == ["group:Approvers"]

    manager = User.objects.create_superuser("manager", "manager@example.com", "pw")
    approvals.decide(request.pk, approved=True, user=manager, comment="ok")
    run_until_idle()
    status = inst.status()
    assert status["status"] == "complete"
    assert status["output"]["approved"] is True


def test_an_order_terminated_with_rollback_refunds_its_charge_and_cancels_its_approval():
    inst = workflows.create("order-fulfilment", params={"order_id": 7, "payment_failure_rate": 0})
    run_until_idle()

    inst.terminate(rollback=True)
    run_until_idle()

    assert inst.status()["status"] == "terminated"
    charge = Step.objects.get(instance_id=inst.id, name="charge card")
    refund = Step.objects.get(instance_id=inst.id, name="rollback charge card")
    assert refund.result == {"refunded": charge.result["id"], "amount": "42.00"}
    assert ApprovalRequest.objects.get(instance_id=inst.id).status == "cancelled"


def test_a_flaky_payment_api_is_retried_with_backoff():
    inst = workflows.create("order-fulfilment", params={"order_id": 7, "payment_failure_rate": 1})
    run_until_idle()
    charge = Step.objects.get(instance_id=inst.id, name="charge card")
    assert (charge.status, charge.attempts) == ("retrying", 1)
    advance("2 seconds")
    advance("4 seconds")
    assert Step.objects.get(pk=charge.pk).attempts == 3


@pytest.mark.schedules
def test_nightly_billing_starts_by_itself_at_three_each_night():
    run_until_idle()  # the schedule is seen: it starts at its next due time, not now
    assert not Instance.objects.filter(workflow="nightly-billing").exists()

    advance("1 day")

    night = Instance.objects.get(workflow="nightly-billing")
    assert night.id.startswith("nightly-billing@") and night.id.endswith("T03:00Z")
    assert night.status == "complete"
    assert night.output == {
        "invoices": ["inv-acme", "inv-globex", "inv-initech"],  # one parallel call per account
        "emailed": 3,  # by a child workflow
        "night": night.params["scheduled_at"],
    }
    assert Instance.objects.get(parent_id=night.id).workflow == "invoice-emails"


def test_a_content_policy_violation_fails_at_once_without_retries():
    inst = workflows.create("content-pipeline", params={"url": "https://example.com/forbidden.jpg"})
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "NonRetryableError"
    assert Step.objects.get(instance_id=inst.id, name="moderate").attempts == 1


def test_acceptable_content_is_published_after_the_caches_settle():
    inst = workflows.create("content-pipeline", params={"url": "https://example.com/cat.jpg"})
    run_until_idle()
    advance("5 seconds")
    assert inst.status()["output"] == {"published": "https://example.com/cat.jpg"}
