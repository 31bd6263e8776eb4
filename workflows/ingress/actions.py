"""What a webhook or consumer handler returns, and the one function that applies it.

The dataclasses are pure Python (exported by `workflows/__init__.py`); `apply_actions`
imports the ORM when it is called.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidState
from ..names import text_problem

# What a delivery's sender could fix: the handler refusing the body (ValueError, or a
# KeyError, TypeError or AttributeError from a body of another shape than it expects:
# a list where it reads a dict's keys) or an action failing (an unknown instance or
# workflow, a taken id, bad params: LookupError and ValueError; an instance that no
# longer takes events: InvalidState).
REFUSALS: tuple[type[Exception], ...] = (ValueError, LookupError, TypeError, AttributeError, InvalidState)


class DeliveryRefused(Exception):
    """The handler or one of its actions refused the delivery; nothing was applied."""

    def __init__(self, error: Exception) -> None:
        self.error_type = type(error).__name__
        self.message = str(error)
        super().__init__(f"{self.error_type}: {self.message}")


@dataclass(frozen=True)
class Outcome:
    applied: int
    duplicate: bool = False


@dataclass(frozen=True)
class SendEvent:
    """Send an event of `type` with `payload` to the instance `instance_id`."""

    instance_id: str
    type: str
    payload: Any = None


@dataclass(frozen=True)
class Create:
    """Create an instance of `workflow` with `params` (and the id `id`, if given)."""

    workflow: str
    params: Any = None
    id: str | None = None


IngressAction = SendEvent | Create


def as_actions(returned: Any, *, handler: str) -> list[IngressAction]:
    """A handler's return value (None, one action or a list of them) as a list."""
    if returned is None:
        return []
    actions = list(returned) if isinstance(returned, list | tuple) else [returned]
    for action in actions:
        if not isinstance(action, SendEvent | Create):
            raise ValueError(
                f"{handler} returned {type(action).__name__}: return None, a SendEvent or a "
                "Create, or a list of them"
            )
    return actions


# Delivery.delivery_id's length.
MAX_DELIVERY_ID = 200


def delivery_key(sender_id: str) -> str:
    """The sender's delivery or message id as stored: itself, or a digest of it when it is
    too long or not storable text (any id a sender uses keeps working)."""
    if len(sender_id) <= MAX_DELIVERY_ID and text_problem(sender_id) is None:
        return sender_id
    digest = hashlib.sha256(sender_id.encode(errors="surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def apply_actions(actions: list[IngressAction], *, source: str, delivery_id: str | None = None) -> int | None:
    """Apply `actions` in one transaction, all or none, and return how many were applied.

    `source` ("hook:<name>", "consumer:<name>") and `delivery_id` (delivery_key() of the
    sender's id of the delivery, if it has one) are recorded in the same transaction: a delivery applied
    before returns None and changes nothing. Raises what the first failing action raised;
    then nothing is applied and nothing is recorded.
    """
    from django.db import IntegrityError, transaction

    from .. import clock, services
    from ..models import Delivery

    with transaction.atomic():
        if delivery_id is not None:
            try:
                # A savepoint: on PostgreSQL a repeat racing its first delivery waits here
                # for the first one's transaction and then finds its row.
                with transaction.atomic():
                    Delivery.objects.create(source=source, delivery_id=delivery_id, received_at=clock.now())
            except IntegrityError:
                return None
        for action in actions:
            if isinstance(action, SendEvent):
                services.send_event(
                    instance_id=action.instance_id, event_type=action.type, payload=action.payload
                )
            else:
                services.create_instance(
                    workflow=action.workflow, params=action.params, instance_id=action.id
                )
    return len(actions)


def handle_delivery(
    handler: Callable[[Any, Any], Any],
    body: Any,
    headers: Any,
    *,
    source: str,
    sender_id: str | None,
    what: str,
) -> Outcome:
    """Run `handler(body, headers)` and apply its actions, once per `sender_id` (the
    delivery or message id its sender gave, if any). `what` names the handler in errors.

    Raises DeliveryRefused for the REFUSALS; anything else the handler raises (a bug, a
    database gone away) propagates. Either way nothing is applied."""
    delivery_id = delivery_key(sender_id) if sender_id else None
    # A repeat is not even handed to the handler: its instance may have moved on since.
    if delivery_id is not None and delivery_seen(source=source, delivery_id=delivery_id):
        return Outcome(applied=0, duplicate=True)
    try:
        actions = as_actions(handler(body, headers), handler=what)
        applied = apply_actions(actions, source=source, delivery_id=delivery_id)
    except REFUSALS as exc:
        raise DeliveryRefused(exc) from exc
    return Outcome(applied=0, duplicate=True) if applied is None else Outcome(applied=applied)


def delivery_seen(*, source: str, delivery_id: str) -> bool:
    """Whether this delivery was applied already (a cheap look before running a handler)."""
    from ..models import Delivery

    return Delivery.objects.filter(source=source, delivery_id=delivery_id).exists()
