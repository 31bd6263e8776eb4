"""Events from message queues (api.md section 12): `@consumer(name, broker_setting=...,
queue=...)` registers a handler for the messages of a queue on any broker kombu supports
(RabbitMQ `amqp://`, `redis://`, `sqs://`...). runner.py consumes them; qcluster runs every
registered consumer (supervisor.py) unless DURABLE_CONSUMERS is 0.

Pure Python: kombu is imported by the runner only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core import checks

from .registry import Handler, Registry, setting_value, unset_setting_warnings

DEFAULT_MAX_DELIVERIES = 5


@dataclass(frozen=True)
class Consumer:
    name: str
    handler: Handler
    broker_setting: str
    queue: str
    max_deliveries: int = DEFAULT_MAX_DELIVERIES

    @property
    def source(self) -> str:
        return f"consumer:{self.name}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    def broker_url(self) -> str | None:
        return setting_value(self.broker_setting)


_consumers: Registry[Consumer] = Registry("consumer")


def consumer(
    name: str, *, broker_setting: str, queue: str, max_deliveries: int = DEFAULT_MAX_DELIVERIES
) -> Callable[[Handler], Handler]:
    """Register the decorated `handler(body, headers)` for the messages of `queue`.

    The broker URL is read from the Django setting or environment variable named
    `broker_setting`. The handler returns None, a `SendEvent` or `Create`, or a list of
    them, applied in one transaction before the message is acknowledged. A message whose
    handler or actions fail is delivered again, `max_deliveries` times in all, then moved
    to the queue `f"{queue}.dead"` with the error in its headers."""
    if not isinstance(broker_setting, str) or not broker_setting:
        raise ValueError(f'consumer "{name}": broker_setting must name a setting, got {broker_setting!r}')
    if not isinstance(queue, str) or not queue:
        raise ValueError(f'consumer "{name}": queue must be a queue name, got {queue!r}')
    if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
        raise ValueError(
            f'consumer "{name}": max_deliveries must be a whole number of 1 or more, got {max_deliveries!r}'
        )

    def register(handler: Handler) -> Handler:
        _consumers.add(
            Consumer(
                name=name,
                handler=handler,
                broker_setting=broker_setting,
                queue=queue,
                max_deliveries=max_deliveries,
            )
        )
        return handler

    return register


def registered_consumers() -> list[Consumer]:
    return _consumers.all()


def get_consumer(name: str) -> Consumer:
    return _consumers.get(name)


def unregister_consumer(name: str) -> None:
    _consumers.remove(name)


def consumers_enabled() -> bool:
    """Whether qcluster runs the registered consumers: DURABLE_CONSUMERS (a setting or an
    environment variable) 0 or False switches them off."""
    from ..conf import setting

    if os.environ.get("DURABLE_CONSUMERS", "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return bool(setting("CONSUMERS"))


@checks.register()
def check_consumer_brokers(app_configs: Any = None, **kwargs: Any) -> list:
    return unset_setting_warnings(
        "consumer",
        [(c.name, c.broker_setting) for c in registered_consumers() if c.broker_url() is None],
        lacks="broker",
        effect="does not run",
        hint="the broker's URL (amqp://user:password@host:5672//)",
        check_id="workflows.W102",
    )
