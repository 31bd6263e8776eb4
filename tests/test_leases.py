"""How long a run holds its instance, and how a dead run's instance is taken back.

Without a heartbeat (workflows.testing, a shell) a claim holds the instance for
LEASE_GRACE_SECONDS, and each step's attempt for its timeout plus that grace. In a cluster
worker the heartbeat renews the leases its process holds, so the lease is short
(LEASE_SECONDS) and a dead run is noticed that soon, whatever its step's timeout.
"""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django_q.exceptions import TimeoutException

import workflows
from workflows import clock, leases, workflow
from workflows.conf import setting
from workflows.models import Instance, StepRun
from workflows.tasks import run_instance
from workflows.testing import advance
from workflows.timers import tick

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()
looks: list[int] = []  # what each look of the timer took: instances queued or taken back
beats: list[int] = []  # leases each beat of the heartbeat renewed


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    looks.clear()
    beats.clear()


@pytest.fixture
def heartbeat(monkeypatch):
    """This process as a cluster worker, whose heartbeat renews the leases it holds.

    The heartbeat thread is not started (it would outlive the test): `_renewing` is set as
    start_heartbeat sets it, and a test calls `renew_held_leases`, one beat, where the
    thread would have."""
    renewing = threading.Event()
    renewing.set()
    monkeypatch.setattr(leases, "_renewing", renewing)


def status_of(inst) -> str:
    return Instance.objects.get(pk=inst.id).status


def attempts(inst):
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("step_id", "attempt")
    return list(runs.values_list("attempt", "outcome", "error_type"))


def timer_looks_after(seconds: float) -> None:
    """The engine's clock moves on `seconds` while the run works, then a timer looks."""
    clock.shift(timedelta(seconds=seconds))
    looks.append(tick())


def count(label: str) -> str:
    calls[label] += 1
    return label


def killed_the_first_time(label: str) -> str:
    calls[label] += 1
    if calls[label] == 1:
        raise TimeoutException("django-q2 killed the task")  # as when a worker dies mid-step
    return label


# --- without a heartbeat: the lease covers the grace ----------------------------------


@workflow("leases-test-killed-before-first-step")
def killed_before_first_step(event, step):
    killed_the_first_time("body")
    return step.do("step", count, "step")


def test_a_run_killed_before_its_first_step_is_taken_back_once_the_lease_grace_has_passed():
    grace = setting("LEASE_GRACE_SECONDS")
    inst = workflows.create("leases-test-killed-before-first-step")
    with pytest.raises(TimeoutException):
        run_instance(inst.id)

    advance(f"{grace - 1} seconds")
    assert status_of(inst) == "running"

    advance("2 seconds")
    assert inst.status() == {"status": "complete", "output": "step", "error": None}
    assert calls == {"body": 2, "step": 1}


@workflow("leases-test-slow-code-around-steps")
def slow_code_around_steps(event, step):
    grace = setting("LEASE_GRACE_SECONDS")
    timer_looks_after(grace - 1)  # before the first step: the claim's lease
    step.do("first", count, "first")
    timer_looks_after(grace - 1)  # between the steps: the lease the attempt's end set
    step.do("second", count, "second")
    return "done"


def test_a_timer_looking_while_the_run_works_between_steps_leaves_the_instance_to_it():
    inst = workflows.create("leases-test-slow-code-around-steps")

    assert run_instance(inst.id) == "complete"

    assert looks == [0, 0]
    assert calls == {"first": 1, "second": 1}
    assert attempts(inst) == [(1, "succeeded", ""), (1, "succeeded", "")]


@workflow("leases-test-killed-between-steps")
def killed_between_steps(event, step):
    step.do("first", count, "first", timeout="10 minutes")
    killed_the_first_time("between")
    return step.do("second", count, "second")


def test_a_run_killed_between_steps_is_taken_back_once_the_grace_after_its_last_step_has_passed():
    grace = setting("LEASE_GRACE_SECONDS")
    inst = workflows.create("leases-test-killed-between-steps")
    with pytest.raises(TimeoutException):
        run_instance(inst.id)

    advance(f"{grace - 1} seconds")
    assert status_of(inst) == "running"  # not the step's ten minutes: its attempt is over

    advance("2 seconds")
    assert inst.status() == {"status": "complete", "output": "second", "error": None}
    assert calls == {"first": 1, "between": 2, "second": 1}


def take_over(instance_id: str) -> None:
    """What a run that claimed the instance after this one was presumed dead does."""
    Instance.objects.filter(pk=instance_id).update(lease_token="another-run")


@workflow("leases-test-taken-over-after-last-step")
def taken_over_after_last_step(event, step):
    step.do("only", count, "only")
    take_over(step.instance_id)
    return "done"


def test_a_run_that_lost_its_lease_after_its_last_step_does_not_end_the_instance():
    inst = workflows.create("leases-test-taken-over-after-last-step")

    assert run_instance(inst.id) == "stopped"

    assert status_of(inst) == "running"  # left to the run that holds the lease
    assert row_ending(inst) == (None, None)


def row_ending(inst) -> tuple:
    instance = Instance.objects.get(pk=inst.id)
    return instance.output, instance.finished_at


# --- in a cluster worker: a short lease the heartbeat renews --------------------------


def outlast_the_lease_while_the_heartbeat_beats() -> str:
    calls["long"] += 1
    for _ in range(4):  # four seconds: more than twice LEASE_SECONDS
        timer_looks_after(1)
        beats.append(leases.renew_held_leases())
    return "done"


@workflow("leases-test-long-step-in-a-worker")
def long_step_in_a_worker(event, step):
    return step.do("long", outlast_the_lease_while_the_heartbeat_beats, timeout="30 minutes")


def test_in_a_worker_the_heartbeat_keeps_a_step_longer_than_the_lease_from_being_taken_back(heartbeat):
    assert setting("LEASE_SECONDS") < 2
    inst = workflows.create("leases-test-long-step-in-a-worker")

    assert run_instance(inst.id) == "complete"

    assert calls["long"] == 1
    assert looks == [0, 0, 0, 0]
    assert beats == [1, 1, 1, 1]
    assert attempts(inst) == [(1, "succeeded", "")]
    assert leases.renew_held_leases() == 0  # the run has let go of its lease


def beat_then_die() -> str:
    calls["step"] += 1
    if calls["step"] == 1:
        timer_looks_after(1)
        beats.append(leases.renew_held_leases())
        raise TimeoutException("django-q2 killed the task")  # the run dies, its worker lives on
    return "step"


@workflow("leases-test-killed-in-a-worker")
def killed_in_a_worker(event, step):
    return step.do("step", beat_then_die, timeout="30 minutes")


def test_in_a_worker_a_run_killed_mid_step_is_taken_back_once_its_short_lease_runs_out(heartbeat):
    lease = setting("LEASE_SECONDS")
    inst = workflows.create("leases-test-killed-in-a-worker")
    with pytest.raises(TimeoutException):
        run_instance(inst.id)

    # The worker's heartbeat beats on, but no longer for the dead run.
    beats.append(leases.renew_held_leases())
    advance(f"{lease - 0.5} seconds")
    beats.append(leases.renew_held_leases())
    assert status_of(inst) == "running"

    advance("1 second")  # the lease the last beat before the kill gave has run out
    assert beats == [1, 0, 0]
    assert inst.status() == {"status": "complete", "output": "step", "error": None}
    assert attempts(inst) == [(1, "failed", "AttemptAbandoned"), (2, "succeeded", "")]
    abandoned = StepRun.objects.get(step__instance_id=inst.id, attempt=1)
    assert abandoned.error_message == (
        'attempt 1 of step "step" never finished: '
        "its worker stopped (crashed, killed, or went past its timeout)"
    )


def test_a_heartbeat_beat_renews_the_held_leases_and_sleeps_out_the_rest_of_its_period(monkeypatch):
    renewed = []
    monkeypatch.setattr(leases, "renew_held_leases", lambda: renewed.append(1) or 1)
    pause = leases.beat()
    assert renewed == [1]
    assert 0 < pause <= setting("HEARTBEAT_SECONDS")
    assert pause > setting("HEARTBEAT_SECONDS") - 0.05  # a renewal takes far less than its period


def test_a_heartbeat_beat_that_fails_logs_it_and_beats_again_on_time(monkeypatch, caplog):
    def broken():
        raise RuntimeError("database gone")

    monkeypatch.setattr(leases, "renew_held_leases", broken)
    with caplog.at_level("ERROR", logger="workflows.leases"):
        pause = leases.beat()
    assert "could not renew leases" in caplog.text
    assert 0 < pause <= setting("HEARTBEAT_SECONDS")


def test_a_slow_beat_starts_the_next_at_once(monkeypatch):
    monkeypatch.setattr(leases, "renew_held_leases", lambda: time.sleep(setting("HEARTBEAT_SECONDS") + 0.01))
    assert leases.beat() == 0.0
