"""Prometheus metrics: what `GET /metrics` answers, and the small functions the engine
calls to count its steps and time its wake-ups.

Two kinds, from two sources (prometheus_client writes the text format):

- **Gauges from the database, at scrape time** (`DatabaseCollector`): instances by
  workflow and status, queued instances and the oldest one's age. The tables are the
  truth, wherever the runs happened; two aggregate queries on indexed columns.
- **Counters and histograms recorded where the engine runs** (steps started, succeeded
  and failed; step durations; wake-up lateness; event-to-resume latency). Steps run in
  django-q2's forked worker processes and the scrape is answered by a web process, so
  these use prometheus_client's multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set
  (the same directory for the web server and the workers of one host), each process
  adds to a memory-mapped file there and the scrape merges them (`MultiProcessCollector`).
  Writing them to the database instead would add a write to every step (about 2 ms
  each); a counter in a mapped file costs microseconds (docs/benchmarks.md).

  The files are named for a *slot*, not a process id: django-q2 replaces a worker every
  few hundred tasks (`recycle`), and files named by pid would pile up by thousands a day.
  A process takes the lowest slot whose lock file no live process holds (`flock`, let go
  by the kernel when the process dies), so a replacement worker reopens its
  predecessor's file and its counters carry on from there. Without the variable the
  counters live in the process only: enough for tests and a single-process server.

Recording never raises into the engine: a metrics failure is logged (once per process)
and the step goes on.
"""

from __future__ import annotations

import fcntl
import hmac
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from django.conf import settings
from django.db.models import Count, Min
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from . import clock, selectors
from .conf import wake_ahead
from .models import Instance, Status, Step, StepKind, StepStatus

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Slot:
    """prometheus_client's process identifier: a slot number this process holds a lock on.

    Called on every write (under prometheus_client's lock): a dict-free check of the pid,
    and a new slot only in a new (forked) process.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = 0
        self.name = ""
        self.lock_file: IO[str] | None = None

    def __call__(self) -> str:
        if os.getpid() != self.pid:
            self._take()
        return self.name

    def _take(self) -> None:
        if self.lock_file is not None:
            # The parent's, inherited through fork: closing this copy leaves its lock to it.
            self.lock_file.close()
        for number in itertools.count():
            lock_file = open(os.path.join(self.directory, f"slot-{number}.lock"), "a")  # noqa: SIM115
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                continue
            self.pid, self.name, self.lock_file = os.getpid(), f"slot{number}", lock_file
            return


def _value_class() -> Any:
    """How prometheus_client stores a value: in a slot's file with PROMETHEUS_MULTIPROC_DIR,
    else in memory. Chosen before the first metric below is made."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return values.MutexValue
    try:
        os.makedirs(directory, exist_ok=True)
        return values.MultiProcessValue(process_identifier=_Slot(directory))
    except OSError:
        logger.exception(
            "metrics: cannot use %s=%s; counting in this process only", MULTIPROCESS_DIR, directory
        )
        return values.MutexValue


values.ValueClass = _value_class()

# The engine's own metrics. In multiprocess mode the scrape reads them from the files; the
# registry serves them when everything runs in one process.
_engine_registry = CollectorRegistry(auto_describe=True)

STEPS_STARTED = Counter(
    "durable_steps_started",
    "Attempts of step.do started (each retry is another).",
    ["workflow"],
    registry=_engine_registry,
)
STEPS_SUCCEEDED = Counter(
    "durable_steps_succeeded",
    "Attempts of step.do that succeeded.",
    ["workflow"],
    registry=_engine_registry,
)
STEPS_FAILED = Counter(
    "durable_steps_failed",
    "Attempts of step.do that failed (retried or not), abandoned ones included.",
    ["workflow"],
    registry=_engine_registry,
)
STEP_DURATION = Histogram(
    "durable_step_duration_seconds",
    "How long an attempt of step.do ran, by outcome.",
    ["workflow", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
    registry=_engine_registry,
)
WAKE_LATENESS = Histogram(
    "durable_wake_lateness_seconds",
    "How long after it was due (end of a sleep, a retry delay or a wait's deadline) the run "
    "of a waiting instance started.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=_engine_registry,
)
EVENT_RESUME = Histogram(
    "durable_event_resume_seconds",
    "From send_event handing an event to the waiting instance to the start of the run that takes it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=_engine_registry,
)

CONSUMER_MESSAGES = Counter(
    "durable_consumer_messages",
    "Queue messages a consumer (@consumer) handled (applied, or a repeat acknowledged), "
    "failed (handed back to the broker) or moved to its dead-letter queue.",
    ["consumer", "outcome"],
    registry=_engine_registry,
)

_failure_logged = False


def _failed() -> None:
    global _failure_logged
    if not _failure_logged:
        _failure_logged = True
        logger.warning("metrics: recording failed (logged once per process)", exc_info=True)


# --- recording (called by the engine: fast, and never raising) ---------------------------


def record_step_start(workflow: str) -> None:
    """An attempt of a step.do of `workflow` started."""
    try:
        STEPS_STARTED.labels(workflow).inc()
    except Exception:
        _failed()


def record_step_end(workflow: str, failure: object | None, duration_ms: float | None) -> None:
    """An attempt ended: `failure` None is a success. `duration_ms` None: the attempt a dead
    worker left running, ended by a later run (its duration is not known)."""
    try:
        outcome = "succeeded" if failure is None else "failed"
        (STEPS_SUCCEEDED if failure is None else STEPS_FAILED).labels(workflow).inc()
        if duration_ms is not None:
            STEP_DURATION.labels(workflow, outcome).observe(duration_ms / 1000)
    except Exception:
        _failed()


def record_consumer_message(consumer: str, outcome: str) -> None:
    """A queue consumer's message was `outcome`: handled, failed or dead_lettered."""
    try:
        CONSUMER_MESSAGES.labels(consumer, outcome).inc()
    except Exception:
        _failed()


def record_wake(lateness_seconds: float) -> None:
    try:
        WAKE_LATENESS.observe(max(lateness_seconds, 0.0))
    except Exception:
        _failed()


def record_event_resume(seconds: float) -> None:
    try:
        EVENT_RESUME.observe(max(seconds, 0.0))
    except Exception:
        _failed()


def record_run_start(history: Sequence[Step], claimed_at: datetime) -> None:
    """A run claimed its instance at `claimed_at` and loaded its recorded steps: if the
    last of them is the one the instance waited on, and it is now due or done, the run
    times its wake-up (a sleep's end, a retry's delay, a wait's deadline) or the event
    that resumed it. (The last step is what the instance suspended on: a run that went
    past it would have recorded a later step or finished the instance.)"""
    try:
        if not history:
            return
        last = history[-1]
        if last.kind == StepKind.WAIT and last.status == StepStatus.SUCCEEDED:
            # Handed over by send_event while the instance waited; a wait that took an
            # event kept from before was created and satisfied at one moment by its run.
            if last.completed_at > last.created_at:
                record_event_resume((claimed_at - last.completed_at).total_seconds())
        elif _due(last, claimed_at):
            # A run claimed ahead of its time waits the rest out: it is not early.
            record_wake(max((claimed_at - last.wake_at).total_seconds(), 0.0))
    except Exception:
        _failed()


def _due(step: Step, now: datetime) -> bool:
    if step.kind == StepKind.SLEEP:
        # Ended by the timer (a sleep already over when reached ends at its creation).
        return step.status == StepStatus.SUCCEEDED and step.completed_at > step.created_at
    # Due, or within the time the timer queues a run ahead (DURABLE_WAKE_AHEAD_SECONDS).
    due = step.wake_at is not None and step.wake_at <= now + wake_ahead()
    if step.kind == StepKind.DO:
        return step.status == StepStatus.RETRYING and due
    return step.kind == StepKind.WAIT and step.status == StepStatus.WAITING and due


# --- reading ---------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """The gauges, computed from the engine's tables at each scrape."""

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        now = clock.now()
        instances = GaugeMetricFamily(
            "durable_instances", "Instances by workflow and status.", labels=["workflow", "status"]
        )
        # What the console's workflows page shows: every registered workflow (and any still
        # in the database), every status.
        for workflow in selectors.workflow_stats():
            for status, number in workflow.counts.items():
                instances.add_metric([workflow.name, status], number)
        yield instances
        # A queued instance's updated_at is when it was queued (created, woken, resumed).
        queued = Instance.objects.filter(status=Status.QUEUED).aggregate(
            number=Count("*"), oldest=Min("updated_at")
        )
        yield GaugeMetricFamily(
            "durable_queued_instances", "Instances queued for a run (not yet taken).", value=queued["number"]
        )
        oldest = queued["oldest"]
        yield GaugeMetricFamily(
            "durable_oldest_queued_age_seconds",
            "How long the instance queued longest has waited for a run (0: none queued).",
            value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )


class _EngineCollector(Collector):
    """This process's counters and histograms (without PROMETHEUS_MULTIPROC_DIR)."""

    def collect(self) -> Iterator[Metric]:
        return _engine_registry.collect()


def exposition() -> bytes:
    """Every metric in Prometheus' text format: the database's gauges, and the engine's
    counters and histograms of every process of this host (or of this process only)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and os.path.isdir(directory):
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_EngineCollector())
    return generate_latest(registry)


def metrics_token() -> str:
    """DURABLE_METRICS_TOKEN (Django setting, else environment): a bearer token that may read
    the metrics without an API token's user; empty: none."""
    return getattr(settings, "DURABLE_METRICS_TOKEN", "") or os.environ.get("DURABLE_METRICS_TOKEN", "")


def is_metrics_token(presented: str) -> bool:
    expected = metrics_token()
    if not expected:
        return False
    return hmac.compare_digest(
        presented.encode(errors="surrogatepass"), expected.encode(errors="surrogatepass")
    )
