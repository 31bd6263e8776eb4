"""The timer thread: wakes due instances and recovers runs whose worker died.

Inside `manage.py qcluster` each worker process runs a timer thread (django-q2's own
scheduler only looks every ~30 s, too coarse for sleeps and retries). It looks every
DURABLE_TIMER_INTERVAL seconds, or sooner when a sleeper is due sooner. Several timers
on several hosts are safe: the transitions they make (lifecycle.py) claim rows under a
lock, SKIP LOCKED on PostgreSQL (SQLite has one writer).
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import connection

from . import clock
from .conf import setting
from .lifecycle import BATCH, recover_abandoned_runs, seconds_until_next_wake, wake_due_instances

logger = logging.getLogger(__name__)


def tick() -> int:
    """One look: due instances queued and abandoned runs recovered; returns how many."""
    now = clock.now()
    return wake_due_instances(now=now) + recover_abandoned_runs(now=now)


_started = threading.Event()


def start_timer_thread() -> None:
    """Start this process's timer thread (once)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run_forever, name="durable-timer", daemon=True).start()


def _run_forever() -> None:
    while True:
        interval = setting("TIMER_INTERVAL")
        try:
            if tick() >= BATCH:
                continue
            # Sleep until the next wake-up if it comes before the next look, so that a
            # sleeper is resumed on time rather than up to an interval late.
            due_in = seconds_until_next_wake(now=clock.now())
        except Exception:
            logger.exception("durable timer tick failed; retrying")
            connection.close()
            time.sleep(1)
            continue
        time.sleep(interval if due_in is None else min(interval, max(due_in, 0.002)))
