"""qcluster runs the registered consumers: one process each, started, watched and stopped
by django-q2's sentinel (broker.DurableBroker.set_stat calls `supervise` at every guard
cycle, about twice a second, and once more when the cluster stops).

A consumer process that dies is started again, after a backoff when it keeps dying; its
unacknowledged messages go back to the broker with its connection. When the cluster
stops (SIGTERM to qcluster) each consumer finishes the message it is handling, or hands
it back, and exits; the sentinel waits for it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from django import db

from .consumers import Consumer, consumers_enabled, get_consumer, registered_consumers

logger = logging.getLogger(__name__)

_context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
_processes: dict[str, Any] = {}
_next_start: dict[str, float] = {}
_backoff: dict[str, float] = {}
_stop: Any = None
_refused: set[str] = set()

# A process that lived this long before dying is started again at once.
STABLE_SECONDS = 10.0
MAX_RESTART_DELAY = 30.0


def supervise(*, stopping: bool) -> None:
    """Start the consumers not running (the cluster runs), or stop them all (it stops)."""
    global _stop
    if stopping:
        if _stop is not None and not _stop.is_set():
            logger.info("cluster stopping: consumers finish their message and stop")
            _stop.set()
        return
    if not consumers_enabled():
        return
    for consumer in registered_consumers():
        if consumer.broker_url() is None:
            if consumer.name not in _refused:
                _refused.add(consumer.name)
                logger.warning(
                    'consumer "%s" does not run: set %s to its broker URL',
                    consumer.name,
                    consumer.broker_setting,
                )
            continue
        process = _processes.get(consumer.name)
        if process is not None and process.is_alive():
            continue
        now = time.monotonic()
        if process is not None and process.started_at is not None:
            lived = now - process.started_at
            delay = (
                0.0
                if lived >= STABLE_SECONDS
                else min(_backoff.get(consumer.name, 0.5) * 2, MAX_RESTART_DELAY)
            )
            _backoff[consumer.name] = delay
            _next_start[consumer.name] = now + delay
            logger.warning(
                'consumer "%s" exited (code %s); starting it again in %.1f s',
                consumer.name,
                process.exitcode,
                delay,
            )
            process.started_at = None
        if now < _next_start.get(consumer.name, 0.0):
            continue
        if _stop is None:
            _stop = _context.Event()
        _processes[consumer.name] = _start(consumer)


def _start(consumer: Consumer) -> Any:
    # A forked child must not share the parent's database connections.
    db.connections.close_all()
    process = _context.Process(
        target=_consumer_process, args=(consumer.name, _stop, os.getpid()), name=f"consumer {consumer.name}"
    )
    process.start()
    process.started_at = time.monotonic()
    return process


def _consumer_process(name: str, stop: Any, parent_pid: int) -> None:
    from .runner import _run_closing_connections

    # SIGTERM (to this process alone) stops it between messages, as the cluster stopping
    # does; Ctrl-C reaches the whole process group, and the cluster stops its consumers.
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _run_closing_connections(get_consumer(name), _Either(stop, terminated), parent_pid)


class _Either:
    """Set when either flag is."""

    def __init__(self, first: Any, second: threading.Event) -> None:
        self.flags = (first, second)

    def is_set(self) -> bool:
        return any(flag.is_set() for flag in self.flags)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout or 0)
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.is_set()
