"""Signed webhooks (api.md section 11): `@webhook(name, secret_setting=...)` registers a
handler for `POST /hooks/<name>`; this module checks signatures and runs a delivery.

The signature scheme is the one Stripe and others use: the sender signs
`f"{t}.".encode() + raw_body` with HMAC-SHA256 and the shared secret, and sends
`X-Durable-Signature: t=<unix seconds>,v1=<hex>`. The timestamp inside the signed bytes
bounds a replay to the tolerance window; the delivery id (`X-Durable-Delivery`) makes a
repeat within it act once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core import checks

from .actions import Outcome, handle_delivery
from .body import check_size, parse_body
from .registry import Handler, Registry, setting_value, unset_setting_warnings

SIGNATURE_HEADER = "X-Durable-Signature"
DELIVERY_HEADER = "X-Durable-Delivery"
# How far a signature's timestamp may be from now, either way.
TOLERANCE_SECONDS = 300


class WebhookNotFound(LookupError):
    """No webhook is registered under that name."""


class InvalidSignature(Exception):
    """The request's signature is missing, wrong or too old."""


class WebhookNotConfigured(Exception):
    """The webhook's secret is not set: it refuses every request."""


@dataclass(frozen=True)
class Webhook:
    name: str
    handler: Handler
    secret_setting: str

    @property
    def source(self) -> str:
        return f"hook:{self.name}"

    def secret(self) -> str | None:
        return setting_value(self.secret_setting)


_webhooks: Registry[Webhook] = Registry("webhook")


def webhook(name: str, *, secret_setting: str) -> Callable[[Handler], Handler]:
    """Register the decorated `handler(body, headers)` as the webhook `POST /hooks/<name>`.

    The secret is read, at each request, from the Django setting or environment variable
    named `secret_setting`. The handler returns None, a `SendEvent` or `Create`, or a list
    of them; raising ValueError refuses the delivery (422)."""
    if not isinstance(secret_setting, str) or not secret_setting:
        raise ValueError(f'webhook "{name}": secret_setting must name a setting, got {secret_setting!r}')

    def register(handler: Handler) -> Handler:
        _webhooks.add(Webhook(name=name, handler=handler, secret_setting=secret_setting))
        return handler

    return register


def registered_webhooks() -> list[Webhook]:
    return _webhooks.all()


def get_webhook(name: str) -> Webhook:
    return _webhooks.get(name, missing=WebhookNotFound)


def unregister_webhook(name: str) -> None:
    _webhooks.remove(name)


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The `X-Durable-Signature` value for `body` (what a sender computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, str(t), body)}"


def _digest(secret: str, t: str, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str | None, body: bytes, *, now: float | None = None) -> None:
    """Raise InvalidSignature unless `header` signs `body` with `secret`, within
    TOLERANCE_SECONDS of `now`. Several v1 values may be given (a secret being rotated)."""
    if not header:
        raise InvalidSignature(f"the {SIGNATURE_HEADER} header is missing")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    timestamps, signatures = fields.get("t", []), fields.get("v1", [])
    # (At most 12 digits: a longer number is no time of this era, and too long a one
    # would be more than int() converts.)
    if (
        len(timestamps) != 1
        or not timestamps[0].isascii()
        or not timestamps[0].isdigit()
        or len(timestamps[0]) > 12
        or not signatures
    ):
        raise InvalidSignature(f'the {SIGNATURE_HEADER} header must be "t=<unix seconds>,v1=<hex>"')
    t = timestamps[0]
    now = time.time() if now is None else now
    if abs(now - int(t)) > TOLERANCE_SECONDS:
        raise InvalidSignature(
            f"the signature's timestamp is more than {TOLERANCE_SECONDS} s from now: "
            "sign each delivery when it is sent"
        )
    expected = _digest(secret, t, body).encode()
    if not any(hmac.compare_digest(expected, given.encode(errors="replace")) for given in signatures):
        raise InvalidSignature("the signature does not match the body and the webhook's secret")


def receive(name: str, *, raw_body: bytes, headers: Mapping[str, str], now: float | None = None) -> Outcome:
    """Handle one delivery to the webhook `name`: check its signature, parse it, run the
    handler and apply its actions in one transaction (a repeated delivery id: nothing).

    Raises WebhookNotFound, WebhookNotConfigured, InvalidSignature, MalformedBody,
    PayloadTooLarge, DeliveryRefused (the handler or an action refused it) or what the
    handler raised unexpectedly; in every case nothing is applied."""
    hook = get_webhook(name)
    secret = hook.secret()
    if secret is None:
        raise WebhookNotConfigured(
            f'webhook "{name}" has no secret: set the {hook.secret_setting} setting or environment '
            "variable; until then it refuses every delivery"
        )
    check_size(len(raw_body))
    verify_signature(secret, headers.get(SIGNATURE_HEADER), raw_body, now=now)
    return handle_delivery(
        hook.handler,
        parse_body(raw_body),
        headers,
        source=hook.source,
        sender_id=headers.get(DELIVERY_HEADER),
        what=f'webhook "{name}"',
    )


@checks.register()
def check_webhook_secrets(app_configs: Any = None, **kwargs: Any) -> list:
    return unset_setting_warnings(
        "webhook",
        [(hook.name, hook.secret_setting) for hook in registered_webhooks() if hook.secret() is None],
        lacks="secret",
        effect="refuses every delivery",
        hint="a long random string shared with the sender",
        check_id="workflows.W101",
    )
