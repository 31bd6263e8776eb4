"""How long a run holds its instance, and the heartbeat that keeps a live run's hold.

A run claims an instance with a lease (a token and an expiry). Inside a cluster worker
the lease is short (DURABLE_LEASE_SECONDS) and a heartbeat thread renews the leases this
process holds, so a worker that dies, however long its step's timeout, is noticed when
its lease runs out and the instance is recovered by any timer. A run in a process with
no heartbeat (workflows.testing, a shell) gets a lease that covers its step's timeout.
A parallel call (calls.py) holds a lease of its own on its step row, kept the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.db import connection

from . import clock
from .conf import setting
from .models import HELD, Instance, Step

logger = logging.getLogger(__name__)

_held: set[str] = set()
_held_calls: set[str] = set()
_lock = threading.Lock()
_renewing = threading.Event()


def hold(token: str) -> None:
    """This process now runs the instance leased with `token`: renew it."""
    with _lock:
        _held.add(token)


def let_go(token: str) -> None:
    with _lock:
        _held.discard(token)


def hold_call(token: str) -> None:
    """This process now runs the parallel call leased with `token`: renew it."""
    with _lock:
        _held_calls.add(token)


def let_go_call(token: str) -> None:
    with _lock:
        _held_calls.discard(token)


def on_claim(now: datetime) -> datetime:
    """When a lease taken now expires, before any step starts."""
    if _renewing.is_set():
        return now + timedelta(seconds=setting("LEASE_SECONDS"))
    return now + timedelta(seconds=setting("LEASE_GRACE_SECONDS"))


def for_attempt(now: datetime, limit: timedelta) -> datetime | None:
    """The expiry a run without a heartbeat needs to run a step with timeout `limit`;
    None when the heartbeat keeps the lease (nothing to write)."""
    if _renewing.is_set():
        return None
    return now + limit + timedelta(seconds=setting("LEASE_GRACE_SECONDS"))


def after_attempt(now: datetime) -> datetime | None:
    if _renewing.is_set():
        return None
    return now + timedelta(seconds=setting("LEASE_GRACE_SECONDS"))


def renew_held_leases() -> int:
    """Push back the expiry of every lease this process holds; returns how many."""
    with _lock:
        tokens, call_tokens = list(_held), list(_held_calls)
    expires = clock.now() + timedelta(seconds=setting("LEASE_SECONDS"))
    renewed = 0
    if tokens:
        renewed += Instance.objects.filter(HELD, lease_token__in=tokens).update(lease_expires_at=expires)
    if call_tokens:
        renewed += Step.objects.filter(HELD, lease_token__in=call_tokens).update(lease_expires_at=expires)
    return renewed


def start_heartbeat() -> None:
    """Start this process's heartbeat thread (once); from now on leases are short."""
    if _renewing.is_set():
        return
    _renewing.set()
    threading.Thread(target=_beat_forever, name="durable-heartbeat", daemon=True).start()


def _beat_forever() -> None:
    while True:
        time.sleep(beat())


def beat() -> float:
    """Renew this process's leases once; return how long to sleep before the next beat."""
    started = time.monotonic()
    try:
        renew_held_leases()
    except Exception:
        logger.exception("durable heartbeat could not renew leases; retrying")
        connection.close()
    return max(0.0, setting("HEARTBEAT_SECONDS") - (time.monotonic() - started))
