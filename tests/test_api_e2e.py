"""The demo order end to end over HTTP only: created through the API, paid through the
payments webhook, approved through the API's events endpoint, run by a real cluster and
read back complete through the API. A real web server (pytest-django's live_server) and a
real qcluster, on the test database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.contrib.auth.models import Group

from support import wait_for
from workflows.api.tokens import create_token
from workflows.ingress.webhooks import signature_header
from workflows.roles import OPERATORS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECRET = "test-payments-secret"


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_demo_order_is_created_paid_approved_and_read_complete_over_http(
    live_server, cluster, django_user_model, settings
):
    settings.PAYMENTS_WEBHOOK_SECRET = SECRET
    django_user_model.objects.create_user(username="olga").groups.set(Group.objects.filter(name=OPERATORS))
    _, token = create_token(username="olga")
    api = f"{live_server.url}/api/v1"
    auth = {"Authorization": f"Bearer {token}"}

    def order() -> dict:
        status, body = http("GET", f"{api}/instances/order-7", headers=auth)
        assert status == 200, body
        return body

    def waiting_step(event_type_prefix: str) -> dict | None:
        steps = [s for s in order()["steps"] if s["status"] == "waiting"]
        return next((s for s in steps if (s["event_type"] or "").startswith(event_type_prefix)), None)

    status, created = http(
        "POST",
        f"{api}/workflows/order-fulfilment/instances",
        {"params": {"order_id": 7, "paid_by": "provider"}, "id": "order-7"},
        auth,
    )
    assert (status, created) == (201, {"id": "order-7", "workflow": "order-fulfilment", "status": "queued"})

    wait_for(lambda: waiting_step("payment"), cluster, what="the order to wait for its payment")
    payment = json.dumps({"order_id": "order-7", "payment_id": "pay_7", "amount": "42.00"}).encode()
    signed = {"X-Durable-Signature": signature_header(SECRET, payment), "X-Durable-Delivery": "pay_7"}
    assert http("POST", f"{live_server.url}/hooks/payments", payment, signed) == (200, {"applied": 1})

    approval = wait_for(lambda: waiting_step("approval:"), cluster, what="the order to wait for approval")
    decision = {"approved": True, "by": "olga", "comment": "ship it", "decided_at": "2026-12-01T12:00:00Z"}
    status, sent = http(
        "POST", f"{api}/instances/order-7/events", {"type": approval["event_type"], "payload": decision}, auth
    )
    assert status == 202 and isinstance(sent["id"], int)

    done = wait_for(lambda: order()["status"] == "complete", cluster, what="the order to complete")
    assert done
    final = order()
    assert final["output"] == {"receipt": "pay_7", "approved": True}
    assert [step["name"] for step in final["steps"]] == [
        "load order",
        "payment confirmed",
        "manager approval",
        "manager approval (notify)",
        "manager approval (decision)",
        "email customer",
    ]
    assert all(step["status"] == "succeeded" for step in final["steps"])
