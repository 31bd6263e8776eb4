"""Publish one JSON message to a queue, as a system sending events to a consumer would:

    python -m workflows.publish payments '{"order_id": "order-44", "payment_id": "pay_9"}' --id pay_9

`--broker` is any broker URL kombu supports (default: the local RabbitMQ of `make run`,
amqp://guest:guest@127.0.0.1:5672//). The message is persistent, confirmed by the broker,
and carries `--id` as its message id, by which a consumer acts on it once. Needs no Django.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def publish(
    broker_url: str,
    queue: str,
    body: Any,
    *,
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
    connection: Any = None,
) -> None:
    """Publish `body` (JSON, or bytes sent as they are) to `queue` on the broker, declaring
    the queue (durable) if it does not exist. `connection`: an open kombu Connection to
    reuse (many messages)."""
    from kombu import Connection, Queue

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if connection is None:
        with Connection(broker_url, transport_options={"confirm_publish": True}) as opened:
            publish(broker_url, queue, raw, message_id=message_id, headers=headers, connection=opened)
        return
    producer = connection.Producer()
    producer.publish(
        raw,
        exchange="",
        routing_key=queue,
        declare=[Queue(queue, routing_key=queue, durable=True)],
        content_type="application/json",
        content_encoding="utf-8",
        message_id=message_id,
        headers=headers or {},
        delivery_mode=2,
        retry=True,
        retry_policy={"max_retries": 20, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflows.publish", description=__doc__.split("\n")[0])
    parser.add_argument("queue")
    parser.add_argument("body", help="the message, as JSON")
    parser.add_argument("--id", dest="message_id", help="the message id (a consumer acts on an id once)")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"the broker URL (default {DEFAULT_BROKER})")
    options = parser.parse_args(argv)
    try:
        body = json.loads(options.body)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: error: the body is not valid JSON: {exc}\n")
    try:
        publish(options.broker, options.queue, body, message_id=options.message_id)
    except Exception as exc:  # the broker unreachable, a bad URL: one line, not a traceback
        parser.exit(1, f"{parser.prog}: error: could not publish to {options.queue}: {exc}\n")
    print(f"published to {options.queue}" + (f" (id {options.message_id})" if options.message_id else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
