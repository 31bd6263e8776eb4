"""Consuming one queue: each message's handler runs, its actions are applied in one
transaction with the message's id, and only then is the message acknowledged.

kombu (the messaging library Celery is built on) speaks to the broker, so any transport it
supports works and this module holds no protocol code. What each message meets:

- not JSON, or over the payload limit: moved to the dead-letter queue `f"{queue}.dead"` at
  once (no delivery could succeed);
- an id seen before (its `message_id`, or an `X-Durable-Delivery` header): acknowledged,
  nothing applied (a redelivery after a crash between the commit and the ack);
- the handler or an action failing: its failed delivery is counted in the database
  (tallies.py: brokers mostly count nothing) and the message is handed back to the broker
  unacknowledged, which delivers it again; at `max_deliveries` it goes to the dead-letter
  queue with the error and the count in its headers;
- the database unreachable: handed back to the broker uncounted, and the loop waits.

The connection is re-made with backoff whenever the broker goes away; an unacknowledged
message is then delivered again by the broker, never lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from typing import Any, Protocol

from django.db import InterfaceError, OperationalError, connection

from .. import clock
from ..conf import setting
from ..metrics import record_consumer_message
from .actions import DeliveryRefused, handle_delivery
from .body import check_size, parse_body
from .consumers import Consumer
from .tallies import add_counts, count_failure, forget_failures, message_key
from .webhooks import DELIVERY_HEADER

logger = logging.getLogger(__name__)

DELIVERIES_HEADER = "x-durable-deliveries"
ERROR_HEADER = "x-durable-error"
# Messages the broker hands over ahead of the one being handled (each still acknowledged
# one by one, after its commit).
PREFETCH = 10
MAX_BACKOFF_SECONDS = 30.0


def transport_options() -> dict[str, Any]:
    return {
        # A message moved to the dead-letter queue is stored by the broker before its
        # original is acknowledged (AMQP publisher confirms).
        "confirm_publish": True,
        # When Redis and SQS hand a message taken but never acknowledged to another consumer.
        "visibility_timeout": float(setting("CONSUMER_VISIBILITY_TIMEOUT")),
        # SQS: a receive waits at most this long for a message (kombu's default, 10 s,
        # would hold a stopping consumer, and a message handed back, that long).
        "wait_time_seconds": 1,
    }


# The consumer's counts go to the database this often (console: the last hour).
COUNTS_EVERY_SECONDS = 2.0
# A failed message is handed back after a pause that doubles with each delivery (RabbitMQ
# and Redis deliver it again at once, to this consumer): a moment for whatever it waits
# for (an instance being created, a lock) without holding the queue long.
FIRST_PAUSE_SECONDS = 0.2
MAX_PAUSE_SECONDS = 2.0


class StopFlag(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class ConsumerLoop:
    """Consume `consumer`'s queue until `stop` is set; safe to stop at any moment."""

    def __init__(self, consumer: Consumer, stop: StopFlag, *, parent_pid: int | None = None) -> None:
        self.consumer = consumer
        self.stop = stop
        # A consumer process whose cluster died stops too.
        self.parent_pid = parent_pid
        self.counts: Counter[str] = Counter()
        # Messages this loop failed and handed back: their counts are forgotten once they
        # succeed (so are those of any message the broker marks as delivered again).
        self.failed_keys: set[str] = set()
        self.counted_at = time.monotonic()

    def stopping(self) -> bool:
        return self.stop.is_set() or (self.parent_pid is not None and os.getppid() != self.parent_pid)

    def run(self) -> None:
        from kombu import Connection
        from kombu.exceptions import OperationalError as BrokerUnreachable

        if self.consumer.broker_url() is None:
            logger.error(
                'consumer "%s" has no broker: set %s; it does not run',
                self.consumer.name,
                self.consumer.broker_setting,
            )
            return
        backoff = 1.0
        logger.info('consumer "%s" consuming queue "%s"', self.consumer.name, self.consumer.queue)
        while not self.stopping():
            url = self.consumer.broker_url() or ""  # read again at each connection
            with Connection(url, transport_options=transport_options()) as broker:
                try:
                    broker.connect()
                    backoff = 1.0
                    self._consume(broker)
                except (BrokerUnreachable, *broker.connection_errors, *broker.channel_errors) as exc:
                    logger.warning(
                        'consumer "%s": the broker is unreachable (%s); connecting again in %.0f s',
                        self.consumer.name,
                        exc,
                        backoff,
                    )
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self.save_counts()
        logger.info('consumer "%s" stopped', self.consumer.name)

    def _consume(self, broker: Any) -> None:
        from kombu import Queue

        channel = broker.channel()
        queue = Queue(self.consumer.queue, routing_key=self.consumer.queue, durable=True, channel=channel)
        dead = Queue(
            self.consumer.dead_letter_queue,
            routing_key=self.consumer.dead_letter_queue,
            durable=True,
            channel=channel,
        )
        queue.declare()
        dead.declare()
        self.producer = broker.Producer(channel)
        with broker.Consumer(queue, channel=channel, on_message=self.on_message, accept=None) as consumer:
            consumer.qos(prefetch_count=PREFETCH)
            while not self.stopping():
                try:
                    broker.drain_events(timeout=1)
                except TimeoutError:
                    broker.heartbeat_check()
                if time.monotonic() - self.counted_at >= COUNTS_EVERY_SECONDS:
                    self.save_counts()

    def on_message(self, message: Any) -> None:
        """Handle one message; it is acknowledged (or handed back) before this returns."""
        consumer = self.consumer
        headers = dict(message.headers or {})
        raw = message.body.encode() if isinstance(message.body, str) else bytes(message.body)
        try:
            check_size(len(raw))
            body = parse_body(raw)
        except ValueError as exc:  # MalformedBody, PayloadTooLarge: no delivery could succeed
            self.dead_letter(message, raw, headers, 1, exc)
            return
        sender_id = message.properties.get("message_id") or headers.get(DELIVERY_HEADER)
        key = message_key(str(sender_id) if sender_id else None, raw)
        try:
            outcome = handle_delivery(
                consumer.handler,
                body,
                headers,
                source=consumer.source,
                sender_id=str(sender_id) if sender_id else None,
                what=f'consumer "{consumer.name}"',
            )
        except (OperationalError, InterfaceError) as exc:
            self.hand_back_uncounted(message, exc)
            return
        except Exception as exc:
            self.count("failed")
            if not isinstance(exc, DeliveryRefused):
                logger.exception('consumer "%s": the handler failed', consumer.name)
            try:
                deliveries = count_failure(consumer.name, key)
            except (OperationalError, InterfaceError) as db_error:
                self.hand_back_uncounted(message, db_error)
                return
            if deliveries >= consumer.max_deliveries:
                self.dead_letter(message, raw, headers, deliveries, exc)
                self.forget(key)
                return
            self.failed_keys.add(key)
            logger.warning(
                'consumer "%s": message %s failed (delivery %d of %d): %s; handed back to the broker',
                consumer.name,
                sender_id or "(no id)",
                deliveries,
                consumer.max_deliveries,
                exc,
            )
            self.stop.wait(min(FIRST_PAUSE_SECONDS * 2 ** (deliveries - 1), MAX_PAUSE_SECONDS))
            message.requeue()
            return
        message.ack()
        self.count("handled")
        if key in self.failed_keys or message.delivery_info.get("redelivered"):
            self.forget(key)  # a count left by earlier failed deliveries
        logger.info(
            'consumer "%s": message %s: %s',
            consumer.name,
            sender_id or "(no id)",
            "a repeat, acknowledged" if outcome.duplicate else f"applied {outcome.applied} action(s)",
        )

    def forget(self, key: str) -> None:
        """The message `key` succeeded or was dead-lettered: its failures' count is done with."""
        forget_failures(self.consumer.name, key)
        self.failed_keys.discard(key)

    def hand_back_uncounted(self, message: Any, error: Exception) -> None:
        """The database, not the message, failed: the broker keeps it, and the loop waits."""
        logger.warning('consumer "%s": the database is unreachable (%s)', self.consumer.name, error)
        message.requeue()
        connection.close()
        self.stop.wait(1.0)

    def dead_letter(self, message: Any, raw: bytes, headers: dict, deliveries: int, error: Exception) -> None:
        error_text = (
            f"{getattr(error, 'error_type', type(error).__name__)}: {getattr(error, 'message', error)}"
        )
        logger.warning(
            'consumer "%s": message %s moved to "%s" after %d delivery(ies): %s',
            self.consumer.name,
            message.properties.get("message_id") or "(no id)",
            self.consumer.dead_letter_queue,
            deliveries,
            error_text,
        )
        dead_headers = {
            **headers,
            DELIVERIES_HEADER: deliveries,
            ERROR_HEADER: error_text[:4000],
            "x-durable-consumer": self.consumer.name,
            "x-durable-failed-at": clock.now().isoformat(),
        }
        self.publish(message, raw, dead_headers, self.consumer.dead_letter_queue)
        message.ack()
        self.count("dead_lettered")

    def publish(self, message: Any, raw: bytes, headers: dict, queue: str) -> None:
        """The message, as it came, to `queue` (persistent, confirmed by the broker)."""
        self.producer.publish(
            raw,
            exchange="",
            routing_key=queue,
            headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            message_id=message.properties.get("message_id"),
            delivery_mode=2,
        )

    def count(self, outcome: str) -> None:
        """For the console (saved every few seconds) and the metrics."""
        self.counts[outcome] += 1
        record_consumer_message(self.consumer.name, outcome)

    def save_counts(self) -> None:
        """Add this loop's counts since the last save to the minute's row."""
        counts, self.counts = self.counts, Counter()
        self.counted_at = time.monotonic()
        if not counts:
            return
        try:
            add_counts(self.consumer.name, counts)
        except (OperationalError, InterfaceError):
            self.counts.update(counts)  # kept for the next save
            connection.close()


def run_consumers(consumers: list[Consumer], stop: threading.Event) -> None:
    """Run each consumer in a thread of this process until `stop` is set
    (`manage.py workflows consume`)."""
    threads = [
        threading.Thread(target=_run_closing_connections, args=(c, stop), name=f"consumer {c.name}")
        for c in consumers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)


def _run_closing_connections(consumer: Consumer, stop: StopFlag, parent_pid: int | None = None) -> None:
    try:
        ConsumerLoop(consumer, stop, parent_pid=parent_pid).run()
    finally:
        connection.close()
