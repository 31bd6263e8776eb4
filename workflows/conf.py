"""The engine's settings, read at call time with defaults, so the app works in any Django
project: set `DURABLE_<NAME>` in the project's settings to change one."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest serialised params, step result, event payload or output, in bytes.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # How often each worker's timer thread wakes due sleepers, retry delays and wait
    # deadlines and recovers abandoned runs, at most (it sleeps less when one is due sooner).
    "TIMER_INTERVAL": 0.2,
    # A run inside a cluster worker holds its instance with a lease this long, renewed
    # every HEARTBEAT_SECONDS by the worker's timer thread: a killed worker is noticed
    # within about this long, whatever its step's timeout.
    "LEASE_SECONDS": 1.5,
    "HEARTBEAT_SECONDS": 0.25,
    # A run outside a cluster (workflows.testing, a shell) has no heartbeat: its lease
    # covers the running step's timeout plus this grace.
    "LEASE_GRACE_SECONDS": 30.0,
    # A run that has been executing steps this long hands its instance back to the queue
    # after the current step, so one instance cannot hog a worker.
    "RUN_SLICE_SECONDS": 300.0,
    # A queued run's task not yet acknowledged after this long is delivered again (a
    # cluster that died with it in memory); a second delivery of a run is harmless.
    "REDELIVERY_SECONDS": 10.0,
}


def setting(name: str) -> Any:
    """The value of DURABLE_<name>, or its default."""
    return getattr(settings, f"DURABLE_{name}", DEFAULTS[name])


def task_timeout() -> int | None:
    """django-q2's task timeout in seconds (None: no limit); a run, so any step, must end
    within it."""
    from django_q.conf import Conf

    return Conf.TIMEOUT
