"""Signed webhooks (api.md section 11): POST /hooks/<name>, checked, applied all or none, once."""

import json
import time

import pytest
from django.core.checks import run_checks

import workflows
from workflows import Create, SendEvent, webhook, workflow
from workflows.ingress.webhooks import signature_header, unregister_webhook
from workflows.models import Delivery, Event, Instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789"


@workflow("webhooks-test-order")
def order(event, step):
    payment = step.wait_for_event("payment", type="payment", timeout="1 hour")
    return {"paid": payment["amount"]}


def payment_then_receipt(body, headers):
    """One event for the named order, and a new receipt instance: two actions."""
    if "amount" not in body:
        raise ValueError('a payment needs an "amount"')
    return [
        SendEvent(instance_id=body["order_id"], type="payment", payload=body),
        Create(workflow="webhooks-test-order", id=f"receipt-{body['order_id']}"),
    ]


@pytest.fixture
def hook(settings):
    """The webhook "test-payments", its secret set; registered for this test only (a hook
    left registered without its secret would be reported by every system check)."""
    settings.TEST_PAYMENTS_SECRET = SECRET
    webhook("test-payments", secret_setting="TEST_PAYMENTS_SECRET")(payment_then_receipt)
    yield "/hooks/test-payments"
    unregister_webhook("test-payments")


def post(client, url, body, *, secret=SECRET, timestamp=None, delivery=None, signature=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Durable-Signature": signature or signature_header(secret, raw, timestamp=timestamp)}
    if delivery is not None:
        headers["X-Durable-Delivery"] = delivery
    return client.post(url, raw, content_type="application/json", headers=headers)


def waiting_order(instance_id="order-1"):
    inst = workflows.create("webhooks-test-order", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    return inst


def test_a_signed_delivery_applies_its_actions_and_wakes_the_waiting_instance(client, hook):
    inst = waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "42.00"})
    assert response.status_code == 200
    assert response.json() == {"applied": 2}
    run_until_idle()
    assert inst.status() == {"status": "complete", "output": {"paid": "42.00"}, "error": None}
    assert workflows.get("receipt-order-1").status()["status"] == "waiting"


def test_a_wrong_signature_is_refused_with_401_and_nothing_happens(client, hook):
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"] == {
        "type": "InvalidSignature",
        "message": "the signature does not match the body and the webhook's secret",
    }
    assert not Event.objects.exists()
    assert not Instance.objects.filter(pk="receipt-order-1").exists()


def test_a_signature_of_another_body_is_refused(client, hook):
    waiting_order()
    signed = signature_header(SECRET, b'{"order_id": "order-1", "amount": "1"}')
    response = post(client, hook, {"order_id": "order-1", "amount": "1000"}, signature=signed)
    assert response.status_code == 401
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "v1=abc",
        "t=now,v1=abc",
        "t=1700000000",
        "garbage",
        "t=" + "9" * 5000 + ",v1=abc",
        "t=\u0663\u0663,v1=ab",
    ],
    ids=[
        "missing",
        "empty",
        "no-timestamp",
        "bad-timestamp",
        "no-v1",
        "garbage",
        "huge-timestamp",
        "arabic-digits",
    ],
)
def test_a_missing_or_malformed_signature_header_is_refused_with_401(client, hook, signature):
    headers = {} if signature is None else {"X-Durable-Signature": signature}
    response = client.post(
        hook, json.dumps({"order_id": "x", "amount": "1"}), content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "InvalidSignature"
    assert not Instance.objects.exists()


def test_a_signature_older_than_five_minutes_is_refused_even_if_correct(client, hook):
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert "more than 300 s from now" in response.json()["error"]["message"]
    assert not Event.objects.exists()


def test_a_signature_from_the_future_beyond_five_minutes_is_refused(client, hook):
    response = post(client, hook, {"order_id": "x", "amount": "1"}, timestamp=int(time.time()) + 301)
    assert response.status_code == 401


def test_a_signature_within_the_window_is_accepted(client, hook):
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, timestamp=int(time.time()) - 290)
    assert response.status_code == 200


def test_any_of_several_v1_signatures_may_match_while_a_secret_is_rotated(client, hook):
    waiting_order()
    raw = json.dumps({"order_id": "order-1", "amount": "1"}).encode()
    t = int(time.time())
    old = signature_header("the-old-secret", raw, timestamp=t)
    new = signature_header(SECRET, raw, timestamp=t)
    response = post(client, hook, raw, signature=f"{old},v1={new.split('v1=')[1]}")
    assert response.status_code == 200


def test_a_repeated_delivery_id_answers_200_and_applies_nothing_twice(client, hook):
    waiting_order()
    body = {"order_id": "order-1", "amount": "42.00"}
    first = post(client, hook, body, delivery="evt_1")
    again = post(client, hook, body, delivery="evt_1")
    assert first.status_code == again.status_code == 200
    assert first.json() == {"applied": 2}
    assert again.json() == {"applied": 0, "duplicate": True}
    assert Event.objects.count() == 1
    assert Delivery.objects.get().delivery_id == "evt_1"


def test_deliveries_with_other_ids_each_apply(client, hook):
    waiting_order()
    post(client, hook, {"order_id": "order-1", "amount": "1"}, delivery="evt_1")
    response = post(client, hook, {"order_id": "order-1", "amount": "2"}, delivery="evt_2")
    # The second asks to create receipt-order-1 again: refused as a whole.
    assert response.status_code == 422
    assert Event.objects.count() == 1


def test_a_failing_action_refuses_the_delivery_with_422_and_applies_none_of_it(client, hook):
    # The first action (an event to an unknown instance) fails: the receipt is not created.
    response = post(client, hook, {"order_id": "no-such-order", "amount": "1"}, delivery="evt_9")
    assert response.status_code == 422
    assert response.json()["error"] == {
        "type": "InstanceNotFound",
        "message": 'no instance with id "no-such-order"',
    }
    assert not Instance.objects.exists()
    assert not Delivery.objects.exists()


def test_a_later_action_failing_undoes_the_earlier_ones(client, hook):
    inst = waiting_order()
    workflows.create("webhooks-test-order", id="receipt-order-1")  # the Create will fail
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, delivery="evt_3")
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InstanceExists"
    assert not Event.objects.exists()
    assert inst.status()["status"] == "waiting"
    assert not Delivery.objects.exists()


def test_a_refused_delivery_can_be_sent_again_and_then_applies(client, hook):
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, delivery="evt_4")
    assert response.status_code == 422  # order-1 does not exist yet
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"}, delivery="evt_4")
    assert response.json() == {"applied": 2}


def test_an_event_to_a_finished_instance_is_refused_with_422(client, hook):
    inst = waiting_order()
    inst.terminate()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "InvalidState"


def test_a_handler_raising_value_error_is_refused_with_422_and_its_message(client, hook):
    waiting_order()
    response = post(client, hook, {"order_id": "order-1"})
    assert response.status_code == 422
    assert response.json()["error"] == {"type": "ValueError", "message": 'a payment needs an "amount"'}
    assert not Event.objects.exists()


def test_a_body_of_another_shape_than_the_handler_expects_is_refused_with_422(client, hook):
    response = post(client, hook, 42)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "TypeError"


def test_an_unknown_hook_is_404_without_naming_the_hooks_there_are(client, hook):
    response = post(client, "/hooks/no-such-hook", {"order_id": "x"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "WebhookNotFound",
        "message": "no webhook named 'no-such-hook'",
    }


def test_a_body_over_the_payload_limit_is_413_and_nothing_happens(client, hook, small_payload_limit):
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "x" * small_payload_limit})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "PayloadTooLarge"
    assert not Event.objects.exists()


def test_a_content_length_that_is_not_a_number_is_400(client, hook):
    raw = b'{"order_id": "order-1"}'
    response = client.post(
        hook,
        raw,
        content_type="application/json",
        headers={"X-Durable-Signature": signature_header(SECRET, raw)},
        CONTENT_LENGTH="not-a-number",
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the Content-Length header is not a number: 'not-a-number'"


def test_malformed_json_is_400_and_nothing_happens(client, hook):
    response = post(client, hook, b'{"order_id": "order-1", ')
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "MalformedJSON"
    assert response.json()["error"]["message"].startswith("the body is not valid JSON")


def test_nan_is_not_json(client, hook):
    response = post(client, hook, b'{"order_id": "order-1", "amount": NaN}')
    assert response.status_code == 400


def test_a_hook_whose_secret_is_unset_refuses_every_delivery_and_the_check_warns(client, hook, settings):
    del settings.TEST_PAYMENTS_SECRET
    waiting_order()
    response = post(client, hook, {"order_id": "order-1", "amount": "1"})
    assert response.status_code == 503
    assert response.json()["error"] == {  # the setting it needs is named in the log, not to the caller
        "type": "WebhookNotConfigured",
        "message": "webhook 'test-payments' is not configured yet: try again later",
    }
    assert not Event.objects.exists()
    warned = [problem for problem in run_checks() if problem.id == "workflows.W101"]
    assert [problem.msg.split(":")[0] for problem in warned] == ['webhook "test-payments" has no secret']


def test_the_secret_may_come_from_the_environment(client, hook, settings, monkeypatch):
    del settings.TEST_PAYMENTS_SECRET
    monkeypatch.setenv("TEST_PAYMENTS_SECRET", SECRET)
    waiting_order()
    assert post(client, hook, {"order_id": "order-1", "amount": "1"}).status_code == 200


def test_a_hook_takes_post_only(client, hook):
    response = client.get(hook)
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "MethodNotAllowed"


def test_a_handler_returning_nothing_applies_nothing(client, settings):
    settings.TEST_NOOP_SECRET = SECRET
    webhook("test-noop", secret_setting="TEST_NOOP_SECRET")(lambda body, headers: None)
    try:
        assert post(client, "/hooks/test-noop", {"ping": True}).json() == {"applied": 0}
    finally:
        unregister_webhook("test-noop")


def test_registering_another_function_under_a_taken_hook_name_is_refused(hook):
    with pytest.raises(ValueError, match='webhook "test-payments" is already registered'):
        webhook("test-payments", secret_setting="X")(lambda body, headers: None)


def test_the_demo_order_paid_by_the_provider_waits_for_the_payments_webhook(client, settings):
    settings.PAYMENTS_WEBHOOK_SECRET = SECRET
    inst = workflows.create("order-fulfilment", params={"order_id": 44, "paid_by": "provider"}, id="order-44")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    body = {"order_id": "order-44", "payment_id": "pay_123", "amount": "42.00"}
    response = post(client, "/hooks/payments", body, delivery="pay_123")
    assert response.json() == {"applied": 1}
    run_until_idle()
    # Paid: it now waits for the manager's approval.
    assert Event.objects.get(instance_id="order-44", type="payment").consumed_by is not None
    assert inst.status()["status"] == "waiting"


def test_delivery_ids_are_forgotten_after_the_retention_period(client, hook):
    from workflows.retention import purge_expired

    waiting_order()
    post(client, hook, {"order_id": "order-1", "amount": "1"}, delivery="evt_old")
    advance("29 days")
    purge_expired()
    assert Delivery.objects.filter(delivery_id="evt_old").exists()
    advance("2 days")
    purge_expired()
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("body", [[], "x", 1, None], ids=["list", "string", "number", "null"])
def test_the_demo_payments_hook_refuses_a_body_that_is_not_an_object_with_422(client, settings, body):
    settings.PAYMENTS_WEBHOOK_SECRET = SECRET
    response = post(client, "/hooks/payments", body)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "type": "ValueError",
        "message": 'a payment needs "payment_id" (a string)',
    }


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b2"], ids=["superscript-two", "superscript-twelve"])
def test_a_content_length_of_digits_that_are_not_ascii_is_400(client, hook, length):
    response = client.post(hook, b"{}", content_type="application/json", headers={"Content-Length": length})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequest"


@pytest.mark.parametrize("path", ["/hooks/", "/hooks/payments/", "/hooks/a/b"])
def test_any_other_path_under_hooks_is_a_json_404(client, path):
    response = client.post(path, b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "WebhookNotFound"


def test_a_chunked_delivery_without_a_length_is_411_not_read_as_empty(client, hook):
    response = client.post(
        hook, "", content_type="application/json", headers={"Transfer-Encoding": "chunked"}
    )
    assert response.status_code == 411
    assert response.json()["error"]["type"] == "LengthRequired"
