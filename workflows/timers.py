"""Waking instances when they are due, and recovering runs whose worker died.

Inside `manage.py qcluster` each worker process runs `tick` on a background thread
every DURABLE_TIMER_INTERVAL seconds (django-q2's own scheduler only looks every
~30 s, too coarse for sleeps and retries). Several timers on several hosts are safe:
each claims rows under a lock (SKIP LOCKED on PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Min

from . import clock
from .conf import setting
from .dispatch import enqueue_run
from .models import Instance, Status

logger = logging.getLogger(__name__)

BATCH = 500


def wake_due_instances(*, now: datetime | None = None) -> int:
    """Queue waiting instances whose sleep, retry delay or wait deadline has come."""
    now = now or clock.now()
    due = Instance.objects.filter(status=Status.WAITING, wake_at__lte=now)
    # Look before taking the write lock: on SQLite a write transaction blocks all writers.
    if not due.exists():
        return 0
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True).order_by("wake_at").values_list("id", flat=True)[:BATCH]
        )
        Instance.objects.filter(pk__in=ids, status=Status.WAITING).update(
            status=Status.QUEUED, wake_at=None, waiting_for="", updated_at=now
        )
        for instance_id in ids:
            enqueue_run(instance_id)
    return len(ids)


def recover_abandoned_runs(*, now: datetime | None = None) -> int:
    """Take back leases whose run stopped renewing them (its worker died) and queue a new run."""
    now = now or clock.now()
    expired = Instance.objects.filter(lease_expires_at__lt=now)
    if not expired.exists():
        return 0
    with transaction.atomic():
        rows = list(expired.select_for_update(skip_locked=True).only("id", "status")[:BATCH])
        for instance in rows:
            instance.lease_token = ""
            instance.lease_expires_at = None
            fields = ["lease_token", "lease_expires_at"]
            if instance.status in (Status.RUNNING, Status.QUEUED):
                instance.status = Status.QUEUED
                instance.updated_at = now
                fields += ["status", "updated_at"]
                enqueue_run(instance.id)
                logger.warning("recovering instance %s: its run stopped without finishing", instance.id)
            instance.save(update_fields=fields)
    return len(rows)


def tick() -> int:
    return wake_due_instances() + recover_abandoned_runs()


def seconds_until_next_wake(*, now: datetime | None = None) -> float | None:
    """How long until the earliest waiting instance is due (None: nobody waits)."""
    earliest = Instance.objects.filter(status=Status.WAITING).aggregate(at=Min("wake_at"))["at"]
    return None if earliest is None else (earliest - (now or clock.now())).total_seconds()


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
            due_in = seconds_until_next_wake()
        except Exception:
            logger.exception("durable timer tick failed; retrying")
            connection.close()
            time.sleep(1)
            continue
        time.sleep(interval if due_in is None else min(interval, max(due_in, 0.002)))
