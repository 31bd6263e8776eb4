"""Demo workflows, loaded by `make run`: each shows one capability of the engine."""

import random

from approvals import request_approval
from workflows import NonRetryableError, SendEvent, WaitTimeout, consumer, webhook, workflow


class PaymentGatewayError(Exception):
    """The (simulated) payment provider is having a bad moment."""


def load_order(order_id: int) -> dict:
    return {
        "id": order_id,
        "amount": "42.00",
        "currency": "EUR",
        "email": f"buyer{order_id}@example.com",
    }


def charge_card(order: dict, failure_rate: float) -> dict:
    # A flaky API: by default most calls fail, so the retries with backoff are visible.
    if random.random() < failure_rate:
        raise PaymentGatewayError("payment gateway timed out (simulated)")
    return {"id": f"ch_{order['id']}_{random.randint(1000, 9999)}", "amount": order["amount"]}


def refund(receipt: dict) -> dict:
    """The charge's compensation: run if the order fails later or is terminated with rollback."""
    return {"refunded": receipt["id"], "amount": receipt["amount"]}


def send_email(to: str, subject: str) -> dict:
    return {"to": to, "subject": subject, "sent": True}


@workflow("order-fulfilment")
def order_fulfilment(event, step):
    """Charge a flaky payment API (retries with backoff), then wait for a manager's approval.
    Terminated with rollback (or failing later), the charge is refunded. An order paid
    through the payment provider instead waits for its "payment" event, which the
    provider's signed webhook (`payments` below) or its message queue sends.

    Params: {"order_id": int, "payment_failure_rate": float between 0 and 1, default 0.6,
    "paid_by": "provider" to wait for the provider's payment instead of charging}.
    """
    order = step.do("load order", load_order, event.payload["order_id"])
    if event.payload.get("paid_by") == "provider":
        payment = step.wait_for_event("payment confirmed", type="payment", timeout="1 day")
        receipt = {"id": payment["payment_id"], "amount": payment.get("amount", order["amount"])}
    else:
        receipt = step.do(
            "charge card",
            charge_card,
            order,
            event.payload.get("payment_failure_rate", 0.6),
            retries={"limit": 8, "delay": "2 seconds", "backoff": "exponential"},
            timeout="30 seconds",
            rollback=refund,
        )
    try:
        decision = request_approval(
            step,
            "manager approval",
            title=f"Ship order {order['id']} ({order['amount']} {order['currency']})?",
            details={"order": order["id"], "customer": order["email"], "charge": receipt["id"]},
            approvers=["group:Approvers"],
            timeout="7 days",
        )
    except WaitTimeout:
        decision = {"approved": False}
    subject = "Your order ships" if decision.get("approved") else "Your order was refunded"
    step.do("email customer", send_email, order["email"], subject)
    return {"receipt": receipt["id"], "approved": bool(decision.get("approved"))}


def payment_event(body: dict, headers: object) -> SendEvent:
    """The payment provider's "payment confirmed" ({"order_id": "order-44", "payment_id":
    "pay_123", "amount": "42.00"}) as the "payment" event of the order it names."""
    if not isinstance(body, dict) or not isinstance(body.get("payment_id"), str):
        raise ValueError('a payment needs "payment_id" (a string)')
    return SendEvent(instance_id=body["order_id"], type="payment", payload=body)


# POST /hooks/payments, signed with the PAYMENTS_WEBHOOK_SECRET setting (README, "Events
# from outside": how to sign and send one with curl).
payments_webhook = webhook("payments", secret_setting="PAYMENTS_WEBHOOK_SECRET")(payment_event)
# The same payments from the provider's RabbitMQ queue "payments" (README: publishing one
# with `python -m workflows.publish`); qcluster consumes it.
payments_consumer = consumer("payments-queue", broker_setting="PAYMENTS_BROKER_URL", queue="payments")(
    payment_event
)


def collect_usage(account: str) -> dict:
    return {"account": account, "units": random.randint(100, 1000)}


def issue_invoice(usage: dict) -> dict:
    return {"invoice": f"inv-{usage['account']}", "total": round(usage["units"] * 0.05, 2)}


ACCOUNTS = ["acme", "globex", "initech"]


@workflow("nightly-billing", schedule="0 3 * * *")
def nightly_billing(event, step):
    """Bills the night's usage at 03:00 UTC: the engine starts one instance per night
    (nightly-billing@2026-12-01T03:00Z), however many clusters run. Each account's usage
    and invoice are parallel calls (step.map); a child workflow mails the invoices."""
    params = event.payload or {}
    accounts = [params["account"]] if "account" in params else ACCOUNTS
    usage = step.map("collect usage", collect_usage, accounts)
    invoices = step.map("issue invoice", issue_invoice, usage)
    emailed = step.run_workflow("email invoices", "invoice-emails", params={"invoices": invoices})
    return {
        "invoices": [invoice["invoice"] for invoice in invoices],
        "emailed": emailed,
        "night": params.get("scheduled_at"),
    }


@workflow("invoice-emails")
def invoice_emails(event, step):
    """A child of the nightly billing: one e-mail per invoice, each a step."""
    for invoice in event.payload["invoices"]:
        step.do(
            f"email {invoice['invoice']}", send_email, "billing@example.com", f"Invoice {invoice['invoice']}"
        )
    return len(event.payload["invoices"])


def fetch_upload(url: str) -> dict:
    return {"url": url, "bytes": 123_456}


def moderate(upload: dict) -> dict:
    if "forbidden" in upload["url"]:
        raise NonRetryableError(f"{upload['url']} breaks the content policy; retrying cannot help")
    return {"verdict": "ok"}


def publish(upload: dict) -> dict:
    return {"published": upload["url"]}


@workflow("content-pipeline")
def content_pipeline(event, step):
    """Fetch, moderate, publish: a policy violation fails at once (non-retryable)."""
    upload = step.do("fetch upload", fetch_upload, event.payload["url"])
    step.do("moderate", moderate, upload)
    step.sleep("let caches settle", "5 seconds")
    return step.do("publish", publish, upload)
