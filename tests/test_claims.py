"""A run holds its instance until it ends: no second run may claim it meanwhile.

Each test here fails when the engine lets a second run claim an instance that a live
run holds: a lease sized too short for the running step, a claim that ignores a live
lease, and (PostgreSQL) a claim that decides on a row it has not locked.
"""

import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction

import workflows
from support import backend_pid, is_blocked
from workflows import leases, workflow
from workflows.models import Instance, Status, Step, StepRun
from workflows.tasks import run_instance
from workflows.testing import advance, run_until_idle

calls: Counter[str] = Counter()
deliveries: list[str] = []


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    deliveries.clear()


def attempts(inst):
    """(attempt, outcome, error type) of every recorded attempt of the instance's steps."""
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("step_id", "attempt")
    return list(runs.values_list("attempt", "outcome", "error_type"))


# --- one claim per queued instance ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("limits", [{}, {"another-workflow": 1}], ids=["no workflow limited", "one limited"])
def test_a_queued_instance_is_claimed_by_one_run_only_whether_or_not_a_workflow_has_a_concurrency_limit(
    monkeypatch, limits
):
    """Without any concurrency limit a claim is one guarded UPDATE; with one, in a
    transaction that also checks the slot of a limited workflow."""
    from workflows import clock, concurrency, lifecycle

    monkeypatch.setattr(concurrency, "limited", lambda: limits)
    inst = workflows.create("claims-test-long-step")

    first = lifecycle.claim(inst.id, now=clock.now())
    assert (first.id, first.status, bool(first.lease_token)) == (inst.id, "running", True)
    assert lifecycle.claim(inst.id, now=clock.now()) is None


# --- the lease covers the running step's timeout --------------------------------------


def outlast_the_grace() -> int:
    calls["long"] += 1
    if calls["long"] == 1:
        # The engine's clock passes the lease grace while the step still runs; the timers
        # and any runnable instance run now, in this process, as a second worker would.
        advance("31 seconds")
    return calls["long"]


@workflow("claims-test-long-step")
def long_step(event, step):
    return step.do("long", outlast_the_grace, timeout="5 minutes")


@pytest.mark.django_db
def test_a_step_running_longer_than_the_lease_grace_is_not_presumed_dead_and_run_again(settings):
    settings.DURABLE_LEASE_GRACE_SECONDS = 30  # pinned: the step above outlasts it by one second
    inst = workflows.create("claims-test-long-step")

    run_until_idle()
    advance("1 hour")  # a retry the step was wrongly given would run now

    assert calls["long"] == 1
    assert inst.status() == {"status": "complete", "output": 1, "error": None}
    assert attempts(inst) == [(1, "succeeded", "")]


# --- a claim respects a live lease ----------------------------------------------------


def pause_resume_and_deliver_again(instance_id: str) -> str:
    calls["resumed"] += 1
    inst = workflows.get(instance_id)
    inst.pause()
    inst.resume()  # queued again while this run still holds the lease
    deliveries.append(run_instance(instance_id))  # django-q2 delivers the resumed run now
    return "done"


@workflow("claims-test-resumed-mid-step")
def resumed_mid_step(event, step):
    return step.do("step", pause_resume_and_deliver_again, step.instance_id)


@pytest.mark.django_db
def test_an_instance_resumed_while_its_step_runs_is_not_claimed_by_the_resumed_delivery():
    inst = workflows.create("claims-test-resumed-mid-step")

    run_until_idle()
    advance("1 hour")

    assert deliveries == ["skipped"]
    assert calls["resumed"] == 1
    assert inst.status() == {"status": "complete", "output": "done", "error": None}
    assert attempts(inst) == [(1, "succeeded", "")]


# --- a run that lost its lease records nothing more ----------------------------------


def take_over(instance_id: str) -> None:
    """What a second run does once it has claimed the instance: its token, still running."""
    Instance.objects.filter(pk=instance_id).update(lease_token="another-run")


def taken_over_mid_step(instance_id: str) -> str:
    calls["taken over"] += 1
    take_over(instance_id)
    return "lost"


@workflow("claims-test-taken-over-mid-step")
def taken_over_mid_step_flow(event, step):
    step.do("step", taken_over_mid_step, step.instance_id)
    calls["after the step"] += 1


@pytest.mark.django_db
def test_a_run_that_lost_its_lease_during_a_step_does_not_record_the_step():
    inst = workflows.create("claims-test-taken-over-mid-step")

    run_instance(inst.id)

    assert calls["taken over"] == 1
    assert calls["after the step"] == 0
    assert attempts(inst) == [(1, "running", "")]  # left for the run that holds the lease
    assert Step.objects.get(instance_id=inst.id).status == "running"


@workflow("claims-test-taken-over-between-steps")
def taken_over_between_steps(event, step):
    step.do("first", count_calls)
    if calls["took over"] == 0:  # code between steps runs on every replay: once is enough
        calls["took over"] += 1
        take_over(step.instance_id)
    step.do("second", count_calls)


@pytest.mark.django_db
def test_a_run_that_lost_its_lease_between_steps_starts_no_further_step():
    inst = workflows.create("claims-test-taken-over-between-steps")

    run_instance(inst.id)

    assert calls["locked"] == 1
    assert list(Step.objects.filter(instance_id=inst.id).values_list("key", "status")) == [
        ("first#1", "succeeded")
    ]


# --- a claim locks the row (PostgreSQL) -----------------------------------------------


def count_calls() -> str:
    calls["locked"] += 1
    return "ran"


@workflow("claims-test-locked-row")
def locked_row(event, step):
    return step.do("step", count_calls)


def claim_until_the_other_waits(instance_id: str, waiter_pid: int, holding: threading.Event) -> None:
    """Claim the instance as a run does (row locked, marked running with a lease), and
    commit only once backend `waiter_pid` waits for that lock (at most 10 s)."""
    try:
        with transaction.atomic():
            instance = Instance.objects.select_for_update().get(pk=instance_id)
            instance.status = Status.RUNNING
            instance.lease_token = "another-run"
            instance.lease_expires_at = workflows.now() + workflows.parse_duration("1 minute")
            instance.save(update_fields=["status", "lease_token", "lease_expires_at"])
            holding.set()
            for _ in range(1000):
                if is_blocked(waiter_pid):
                    break
                time.sleep(0.01)
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_arrives_while_another_run_is_claiming_waits_for_it_and_skips():
    inst = workflows.create("claims-test-locked-row")
    holding = threading.Event()
    other = threading.Thread(target=claim_until_the_other_waits, args=(inst.id, backend_pid(), holding))
    other.start()
    try:
        assert holding.wait(10)
        outcome = run_instance(inst.id)
    finally:
        other.join(15)

    assert outcome == "skipped"
    assert calls["locked"] == 0
    # The other run dies without finishing: once its lease has run out the instance is
    # recovered and its step runs, once.
    advance("2 minutes")
    assert calls["locked"] == 1
    assert inst.status() == {"status": "complete", "output": "ran", "error": None}


def take_over_once_this_run_waits(instance_id: str) -> str:
    """Claim the instance from another connection as a second run would, and hold the row
    until this run's end-of-attempt write waits for it."""
    calls["locked"] += 1
    holding = threading.Event()
    other = threading.Thread(target=claim_until_the_other_waits, args=(instance_id, backend_pid(), holding))
    other.start()
    assert holding.wait(10)
    calls["claimer"] = other  # joined by the test
    return "ran"


@workflow("claims-test-end-write-waits")
def end_write_waits(event, step):
    return step.do("step", take_over_once_this_run_waits, step.instance_id)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("heartbeat", [False, True], ids=["lease-per-attempt", "heartbeat"])
def test_a_step_ending_while_another_run_claims_the_instance_waits_for_it_and_records_nothing(
    heartbeat, monkeypatch
):
    if heartbeat:  # as in a cluster worker: the guard locks the row without moving the lease
        monkeypatch.setattr(leases, "after_attempt", lambda now: None)
    inst = workflows.create("claims-test-end-write-waits")
    try:
        outcome = run_instance(inst.id)
    finally:
        calls["claimer"].join(15)

    assert outcome == "stopped"
    assert calls["locked"] == 1
    assert attempts(inst) == [(1, "running", "")]
