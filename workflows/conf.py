"""The engine's settings, read at call time with defaults, so the app works in any Django
project: set them in one dict, `DURABLE = {"RETENTION": "90 days", "LEASE_SECONDS": 2}`,
or one by one as `DURABLE_<NAME>` (the dict wins where both are set). And the django-q2
configuration the engine needs: `Q_CLUSTER = q_cluster()`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest serialised params, step result, event payload or output, in bytes.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # How often a cluster's timer threads (one per worker, taking turns) wake due sleepers,
    # retry delays and wait deadlines and recover abandoned runs, at most (a timer sleeps
    # less when one is due sooner).
    "TIMER_INTERVAL": 0.2,
    # The timer queues a sleeper (or a retry delay, or a wait's deadline) this many seconds
    # before it is due, and its run waits out the rest in its worker: the queue, the
    # dispatch to a worker and the claim then happen before the wake-up, not after it.
    # (A run never continues early; it holds a worker for at most this long.)
    "WAKE_AHEAD_SECONDS": 0.05,
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
    # Finished instances (complete, errored, terminated) older than this are deleted with
    # their steps, attempts and events by the cluster; @workflow(retention=...) overrides.
    "RETENTION": "30 days",
    # Start scheduled workflows (@workflow(schedule=...)); False keeps a deployment (a
    # staging site, a test suite) from starting any.
    "SCHEDULES": True,
    # qcluster runs every registered queue consumer (@consumer), one process each; False
    # (or the environment variable DURABLE_CONSUMERS=0) leaves that to
    # `manage.py workflows consume NAME...` or to nothing.
    "CONSUMERS": True,
    # Redis and SQS hand a message a consumer took but never acknowledged (it died) to
    # another consumer after this many seconds (kombu's own default is an hour); RabbitMQ
    # does at once, when the dead consumer's connection drops. Longer than any handler.
    "CONSUMER_VISIBILITY_TIMEOUT": 300.0,
}


DURABLE_BROKER = "workflows.broker.DurableBroker"

# What the engine needs from django-q2 (checks.py reports a project that differs). It only
# delivers "run instance X" tasks: the engine's tables decide what runs, so a task
# delivered twice is harmless and django-q2 itself never retries one.
_Q_CLUSTER_DEFAULTS: dict[str, Any] = {
    "name": "durable",
    # The ORM broker on the engine's database: a run is queued in the transaction that
    # makes its instance runnable, and commits or rolls back with it.
    "orm": "default",
    # ... woken by PostgreSQL NOTIFY, redelivering a lost run after seconds (broker.py).
    "broker_class": DURABLE_BROKER,
    # A task runs until its instance suspends: the longest step timeout must fit in it.
    "timeout": 3600,
    "max_attempts": 1,
    "ack_failures": True,
    # Successes are not stored: the engine's tables record every run. (A positive limit
    # makes django-q2 lock and load all stored successes on every task: a bottleneck.)
    "save_limit": -1,
    "catch_up": False,
    "guard_cycle": 0.5,
    "recycle": 500,
    "label": "Task queue (django-q2)",
}


def q_cluster(**overrides: Any) -> dict[str, Any]:
    """A `Q_CLUSTER` setting that runs the engine: `Q_CLUSTER = q_cluster(workers=4)`.

    Any django-q2 key may be overridden. `retry` (when a task not acknowledged is
    delivered again) follows `timeout`, ten minutes above it, and `bulk` (tasks taken per
    look at the queue) follows `workers`, unless given.
    """
    cluster = {**_Q_CLUSTER_DEFAULTS, **overrides}
    if cluster["timeout"] is not None:
        cluster.setdefault("retry", cluster["timeout"] + 600)
    if "workers" in cluster:
        cluster.setdefault("bulk", cluster["workers"])
    return cluster


def setting(name: str) -> Any:
    """The engine setting `name`: DURABLE[name], else DURABLE_<name>, else its default."""
    grouped = getattr(settings, "DURABLE", None)
    if isinstance(grouped, dict) and name in grouped:
        return grouped[name]
    return getattr(settings, f"DURABLE_{name}", DEFAULTS[name])


def task_timeout() -> int | None:
    """django-q2's task timeout in seconds (None: no limit); a run, so any step, must end
    within it."""
    from django_q.conf import Conf

    return Conf.TIMEOUT


def wake_ahead() -> timedelta:
    """How long before a wake-up the timer queues its run (DURABLE_WAKE_AHEAD_SECONDS)."""
    return timedelta(seconds=setting("WAKE_AHEAD_SECONDS"))


def schedules_enabled() -> bool:
    return bool(setting("SCHEDULES"))
