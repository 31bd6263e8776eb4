"""What the database keeps about a queue consumer's messages beside their actions: the
counts per minute the console shows, and how many times each failing message has been
delivered (a failed message goes back to the broker unacknowledged, and most brokers do
not count deliveries: RabbitMQ's classic queues, Redis and SQS through kombu do not)."""

from __future__ import annotations

import hashlib
from collections import Counter

from django.db import IntegrityError, transaction
from django.db.models import F

from .. import clock
from ..models import ConsumerCount, FailedMessage
from .actions import delivery_key

COUNTED = ("handled", "failed", "dead_lettered")


def add_counts(consumer_name: str, counts: Counter[str]) -> None:
    """Add `counts` to the consumer's row of this minute."""
    minute = clock.now().replace(second=0, microsecond=0)
    increments = {field: F(field) + counts[field] for field in COUNTED}
    rows = ConsumerCount.objects.filter(consumer=consumer_name, minute=minute)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            ConsumerCount.objects.create(
                consumer=consumer_name, minute=minute, **{field: counts[field] for field in COUNTED}
            )
    except IntegrityError:  # another process of the same consumer made the row just now
        rows.update(**increments)


def message_key(sender_id: str | None, raw: bytes) -> str:
    """What identifies a message across its deliveries: its id, else its body's digest (two
    identical messages without ids share one count)."""
    if sender_id:
        return delivery_key(sender_id)
    return f"body:{hashlib.sha256(raw).hexdigest()}"


def count_failure(consumer_name: str, key: str) -> int:
    """Record one more failed delivery of the message `key`; returns how many it has had."""
    rows = FailedMessage.objects.filter(consumer=consumer_name, message_key=key)
    now = clock.now()
    with transaction.atomic():
        if not rows.update(deliveries=F("deliveries") + 1, failed_at=now):
            try:
                with transaction.atomic():
                    FailedMessage.objects.create(
                        consumer=consumer_name, message_key=key, deliveries=1, failed_at=now
                    )
            except IntegrityError:  # another process failed the same message just now
                rows.update(deliveries=F("deliveries") + 1, failed_at=now)
        return rows.values_list("deliveries", flat=True).get()


def forget_failures(consumer_name: str, key: str) -> None:
    """The message succeeded or was dead-lettered: its count is done with."""
    FailedMessage.objects.filter(consumer=consumer_name, message_key=key).delete()
