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
from support import ProcessEnds, sleeps_until_the_third, threads_started
from workflows import clock, leases, workflow
from workflows.calls import run_call
from workflows.conf import setting
from workflows.models import Instance, Step, StepRun
from workflows.tasks import run_instance
from workflows.testing import advance, run_until_idle
from workflows.timers import tick

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()
looks: list[int] = []  # what each look of the timer took: instances queued or taken back
beats: list[int] = []  # leases each beat of the heartbeat renewed
call_leases: list[float] = []  # seconds left on a running call's lease after each beat


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    looks.clear()
    beats.clear()
    call_leases.clear()


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


def slow_call(item: int) -> int:
    timer_looks_after(setting("LEASE_GRACE_SECONDS") + 1)  # longer than a claim's lease
    return item


@workflow("leases-test-slow-call")
def slow_call_flow(event, step):
    return step.map("slow", slow_call, [7], timeout="10 minutes")


def test_a_timer_looking_while_a_parallel_call_works_leaves_the_call_to_its_worker():
    inst = workflows.create("leases-test-slow-call")
    run_instance(inst.id)  # the instance waits for its call

    assert run_call(Step.objects.get(group__isnull=False).pk) == "succeeded"

    assert looks == [0]  # the attempt's lease covers its timeout
    run_until_idle()
    assert inst.status() == {"status": "complete", "output": [7], "error": None}


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


def outlast_the_lease_in_a_parallel_call(item: int) -> int:
    calls["call"] += 1
    for _ in range(3):  # three seconds: twice LEASE_SECONDS
        timer_looks_after(1)
        beats.append(leases.renew_held_leases())
        call = Step.objects.get(status="running", group__isnull=False)
        call_leases.append((call.lease_expires_at - clock.now()).total_seconds())
    return item


@workflow("leases-test-long-call-in-a-worker")
def long_call_in_a_worker(event, step):
    return step.map("long", outlast_the_lease_in_a_parallel_call, [7], timeout="30 minutes")


def test_in_a_worker_the_heartbeat_renews_the_lease_of_a_parallel_call_it_runs(heartbeat):
    inst = workflows.create("leases-test-long-call-in-a-worker")
    run_instance(inst.id)  # the instance waits for its call
    call_id = Step.objects.get(group__isnull=False).pk

    assert run_call(call_id) == "succeeded"

    assert leases._held_calls == set()  # let go once it ended: the heartbeat renews it no more
    assert calls["call"] == 1
    assert looks == [0, 0, 0]
    assert beats == [1, 1, 1]
    assert all(0 < left <= setting("LEASE_SECONDS") for left in call_leases)  # renewed, not dropped
    run_until_idle()
    assert inst.status() == {"status": "complete", "output": [7], "error": None}


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


def test_a_heartbeat_renews_only_the_leases_its_worker_holds_and_counts_them(monkeypatch):
    """Another worker's leases (perhaps a dead one's) are left to run out: renewing them
    would keep that worker's runs and calls from ever being recovered."""
    soon = clock.now() + timedelta(seconds=0.5)
    rows = {}
    for owner in ("ours", "theirs"):
        inst = workflows.create("leases-test-killed-before-first-step", id=f"{owner}-run")
        Instance.objects.filter(pk=inst.id).update(lease_token=f"{owner}-run", lease_expires_at=soon)
        call = Step.objects.create(
            instance_id=inst.id,
            generation=1,
            key="call#1",
            name="call",
            kind="do",
            status="running",
            lease_token=f"{owner}-call",
            lease_expires_at=soon,
            created_at=clock.now(),
        )
        rows[owner] = (inst.id, call.pk)
    monkeypatch.setattr(leases, "_held", {"ours-run"})
    monkeypatch.setattr(leases, "_held_calls", {"ours-call"})

    assert leases.renew_held_leases() == 2  # one instance and one call

    def expiry(owner: str):
        instance_id, call_id = rows[owner]
        return (
            Instance.objects.get(pk=instance_id).lease_expires_at,
            Step.objects.get(pk=call_id).lease_expires_at,
        )

    assert all(expires > soon for expires in expiry("ours"))
    assert expiry("theirs") == (soon, soon)


def query_plan(sql: str, params) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is scanned anyway
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return " ".join(str(row[-1]) for row in cursor.fetchall())


@pytest.mark.parametrize("held", [1, 101], ids=["one-lease", "over-100-leases"])
def test_a_heartbeat_renews_its_leases_through_the_index_of_held_leases_not_a_scan_of_every_row(
    monkeypatch, held
):
    """Four times a second per worker, whatever the number of instances and steps: a
    renewal that scanned the tables took 20-50 ms with 100,000 instances asleep. (On
    PostgreSQL the index's condition, the lease held, must be stated past 100 tokens: up to
    100 the planner proves it from the tokens themselves, none of which is empty.)"""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(leases, "_held", {f"a{n:031x}" for n in range(held)})
    monkeypatch.setattr(leases, "_held_calls", {f"b{n:031x}" for n in range(held)})
    with CaptureQueriesContext(connection) as captured:
        leases.renew_held_leases()

    renewals = [query["sql"] for query in captured if query["sql"].startswith("UPDATE")]
    assert len(renewals) == 2
    instance_plan, step_plan = (query_plan(sql, None) for sql in renewals)
    assert "instance_held_lease_idx" in instance_plan, instance_plan
    assert "step_held_lease_idx" in step_plan, step_plan


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
    assert caplog.messages == ["durable heartbeat could not renew leases; retrying"]
    assert 0 < pause <= setting("HEARTBEAT_SECONDS")


def test_a_slow_beat_starts_the_next_at_once(monkeypatch):
    monkeypatch.setattr(leases, "renew_held_leases", lambda: time.sleep(setting("HEARTBEAT_SECONDS") + 0.01))
    assert leases.beat() == 0.0


# --- the heartbeat thread -------------------------------------------------------------


def test_a_worker_starts_one_heartbeat_thread_which_does_not_keep_the_process_alive(monkeypatch):
    started = threads_started(
        monkeypatch,
        leases,
        flag="_renewing",
        loop="_beat_forever",
        start=leases.start_heartbeat,
        name="durable-heartbeat",
    )
    assert started == [("durable-heartbeat", True)]  # once per process
    now = clock.now()
    assert leases.on_claim(now) == now + timedelta(seconds=setting("LEASE_SECONDS"))  # short from now on


def test_the_heartbeat_thread_beats_again_after_each_pause_its_beat_asks_for(monkeypatch):
    pauses, slept = iter([0.25, 0.1, 0.0]), []
    monkeypatch.setattr(leases, "beat", lambda: next(pauses))
    monkeypatch.setattr(leases, "time", sleeps_until_the_third(slept))

    with pytest.raises(ProcessEnds):
        leases._beat_forever()
    assert slept == [0.25, 0.1, 0.0]
