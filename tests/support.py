"""Helpers for tests: console clients signed in with a role, watching real processes
(a qcluster, a browser), PostgreSQL's view of who waits for a lock, the engine's
background threads started and stopped in-process, and the step metrics."""

import threading
import time
from types import SimpleNamespace

# Debian's chromium (make chromium): the browser tests never download a browser.
CHROMIUM = "/usr/bin/chromium"


def wait_for(condition, cluster, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}; cluster log:\n{cluster.log_path.read_text()[-3000:]}"
    )


def client_for(django_user_model, *groups: str):
    """A test client signed in as a new user who is in `groups` (none: no role at all)."""
    from django.contrib.auth.models import Group
    from django.test import Client

    user = django_user_model.objects.create_user(username="-".join(groups) or "nobody", password="pw")
    user.groups.set(Group.objects.filter(name__in=groups))
    client = Client()
    client.force_login(user)
    return client


def backend_pid() -> int:
    """This thread's PostgreSQL backend."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def is_blocked(pid: int) -> bool:
    """Whether PostgreSQL backend `pid` waits for a lock another transaction holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return cursor.fetchone()[0]


def threads_started(monkeypatch, module, *, flag: str, loop: str, start, name: str) -> list[tuple[str, bool]]:
    """Call `start` twice, its thread's `loop` replaced by one that notes the thread it runs
    in (name, daemon) and ends at once, so that no engine thread outlives the test; `flag`
    is the module's started-once Event, fresh here. Returns what the threads noted."""
    ran = []
    done = threading.Event()

    def note_the_thread():
        thread = threading.current_thread()
        ran.append((thread.name, thread.daemon))
        done.set()

    monkeypatch.setattr(module, flag, threading.Event())
    monkeypatch.setattr(module, loop, note_the_thread)
    start()
    start()
    assert done.wait(timeout=5)
    for thread in threading.enumerate():
        if thread.name == name:
            thread.join(timeout=5)
    return ran


class ProcessEnds(Exception):
    """Ends an engine thread's endless loop in a test (in a worker it ends with its process)."""


def sleeps_until_the_third(slept: list[float], **more) -> SimpleNamespace:
    """A stand-in for a module's `time`: `sleep` notes each pause and ends the loop at the third."""

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            raise ProcessEnds

    return SimpleNamespace(sleep=sleep, **more)


STEP_METRICS = [
    ("durable_steps_started_total", {}),
    ("durable_steps_succeeded_total", {}),
    ("durable_steps_failed_total", {}),
    ("durable_step_duration_seconds_count", {"outcome": "succeeded"}),
    ("durable_step_duration_seconds_count", {"outcome": "failed"}),
]


def step_metrics(workflow: str) -> list[float]:
    """The step metrics of `workflow` in this process: attempts started, succeeded and failed,
    and the durations observed of successes and failures (STEP_METRICS)."""
    from workflows import metrics

    labels = {"workflow": workflow}
    registry = metrics._engine_registry
    return [registry.get_sample_value(name, {**labels, **more}) or 0.0 for name, more in STEP_METRICS]
