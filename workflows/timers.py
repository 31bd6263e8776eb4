"""The timer thread: starts scheduled workflows, wakes due instances, recovers runs (and
parallel calls) whose worker died, deletes finished instances past their retention and
rolls up the workflows page's figures.

Inside `manage.py qcluster` each worker process runs a timer thread (django-q2's own
scheduler only looks every ~30 s, too coarse for sleeps and retries). Together the timers
of a cluster look about every DURABLE_TIMER_INTERVAL seconds, or sooner when a sleeper is
due sooner; each timer, about once a minute, deletes a batch of finished instances past
their retention and rolls up what the workflows page shows (hours.py, counts.py). Several
timers on several hosts are safe: the transitions they make (lifecycle.py, schedules.py,
retention.py) claim rows under a lock, SKIP LOCKED on PostgreSQL (SQLite has one writer),
and the rollups lock their mark (rollups.py).
"""

from __future__ import annotations

import logging
import random
import threading
import time

from django.db import connection

from . import calls, clock, counts, hours, retention
from .conf import setting, wake_ahead
from .lifecycle import BATCH, recover_abandoned_runs, seconds_until_next_wake, wake_due_instances
from .schedules import start_due

logger = logging.getLogger(__name__)


def tick() -> int:
    """One look: scheduled workflows started, due instances queued and abandoned runs
    recovered; returns how many."""
    now = clock.now()
    return (
        start_due(now=now)
        + wake_due_instances(now=now, ahead=wake_ahead())
        + recover_abandoned_runs(now=now)
        + calls.wake_for_lost_calls(now=now)
    )


def roll_up() -> None:
    """Keep the hours that have closed and add up the instances that have ended, for the
    workflows page (each does nothing when another timer just did)."""
    now = clock.now()
    hours.roll_up(now=now)
    counts.settle(now=now)


_started = threading.Event()


def start_timer_thread() -> None:
    """Start this process's timer thread (once)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run_forever, name="durable-timer", daemon=True).start()


# How often a timer looks for finished instances past their retention (a full batch
# deleted: it looks again at once), and rolls up the workflows page's figures.
RETENTION_LOOK_SECONDS = 60.0
ROLLUP_LOOK_SECONDS = 60.0


class Timer:
    """One timer thread's looks; the thread sleeps as long as each look says.

    `spread`: how many timers share the looking (one per worker of the cluster). Each
    looks `spread` times less often, at a random point of its longer interval, so that a
    cluster looks about every DURABLE_TIMER_INTERVAL whatever its number of workers
    (a hundred workers do not make a hundred times the queries).
    """

    def __init__(self, spread: int = 1) -> None:
        self.spread = max(1, spread)
        # Soon after start, at a random moment, so that the timers of many workers spread out.
        self.next_retention_look = time.monotonic() + random.uniform(1, 5)
        self.next_rollup_look = time.monotonic() + random.uniform(1, 5)

    def look(self) -> float:
        """Delete a batch past its retention when it is time, then tick; return how long
        to sleep before the next look."""
        interval = setting("TIMER_INTERVAL") * self.spread
        if self.spread > 1:
            interval *= random.uniform(0.5, 1.5)
        try:
            if time.monotonic() >= self.next_retention_look:
                if retention.purge_expired() < retention.BATCH:
                    self.next_retention_look = time.monotonic() + RETENTION_LOOK_SECONDS
            if time.monotonic() >= self.next_rollup_look:
                roll_up()
                self.next_rollup_look = time.monotonic() + ROLLUP_LOOK_SECONDS
            if tick() >= BATCH:
                return 0.0  # a full batch: more may be due at once
            # Sleep until the next wake-up if it comes before the next look, so that a
            # sleeper is resumed on time rather than up to an interval late.
            due_in = seconds_until_next_wake(now=clock.now(), ahead=wake_ahead())
        except Exception:
            logger.exception("durable timer tick failed; retrying")
            connection.close()
            return 1.0
        return interval if due_in is None else min(interval, max(due_in, 0.002))


def _run_forever() -> None:
    from django_q.conf import Conf

    timer = Timer(spread=Conf.WORKERS or 1)
    while True:
        time.sleep(timer.look())
