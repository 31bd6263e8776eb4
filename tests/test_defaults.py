"""The defaults and edge rules api.md promises: step and wait timeouts, the retry policy,
events and resume refused in the wrong status, the clock, the event's timestamp."""

from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from django.utils import timezone
from django_q.conf import Conf

import workflows
from workflows import InvalidState, NonRetryableError, WaitTimeout, workflow
from workflows.models import Event, Instance, StepRun
from workflows.testing import advance, reset_clock, run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


def attempts(inst):
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("attempt")
    return list(runs.values_list("attempt", "outcome", "error_type"))


# --- the step timeout: 10 minutes -----------------------------------------------------


def quick() -> str:
    return "done"


@workflow("defaults-test-quick-step")
def quick_step(event, step):
    return step.do("quick", quick)


def test_a_step_without_a_timeout_needs_ten_minutes_of_worker_task(monkeypatch):
    # A worker task of 659 s leaves 599 s for a step: one second short of the default timeout.
    # (django-q2 reads Q_CLUSTER once, at import, into Conf.)
    monkeypatch.setattr(Conf, "TIMEOUT", 659)
    inst = workflows.create("defaults-test-quick-step")
    run_until_idle()

    error = inst.status()["error"]
    assert error["type"] == "ValueError"
    assert "timeout 10 minutes does not fit in a worker task (659 s" in error["message"]


def test_a_step_without_a_timeout_fits_a_worker_task_of_ten_minutes_and_the_headroom(monkeypatch):
    monkeypatch.setattr(Conf, "TIMEOUT", 660)  # 600 s for the step, 60 s headroom
    inst = workflows.create("defaults-test-quick-step")
    run_until_idle()

    assert inst.status() == {"status": "complete", "output": "done", "error": None}


def take_engine_time(seconds: int) -> int:
    calls["long"] += 1
    if calls["long"] == 1:
        advance(f"{seconds} seconds")  # the attempt lasts this long for the engine
    return calls["long"]


@workflow("defaults-test-long-step")
def long_step(event, step):
    return step.do("long", take_engine_time, event.payload, retries={"limit": 1, "delay": 0})


def test_an_attempt_within_the_default_ten_minute_timeout_is_not_presumed_dead(settings):
    settings.DURABLE_LEASE_GRACE_SECONDS = 30  # pinned: a run is presumed dead 30 s after its timeout
    inst = workflows.create("defaults-test-long-step", params=10 * 60 + 29)
    run_until_idle()

    assert calls["long"] == 1
    assert attempts(inst) == [(1, "succeeded", "")]
    assert inst.status()["status"] == "complete"


def test_an_attempt_past_the_default_ten_minute_timeout_counts_as_a_failed_attempt(settings):
    settings.DURABLE_LEASE_GRACE_SECONDS = 30  # pinned: a run is presumed dead 30 s after its timeout
    inst = workflows.create("defaults-test-long-step", params=10 * 60 + 31)
    run_until_idle()

    assert calls["long"] == 2
    assert attempts(inst) == [(1, "failed", "AttemptAbandoned"), (2, "succeeded", "")]
    assert inst.status() == {"status": "complete", "output": 2, "error": None}


# --- the wait timeout: 24 hours -------------------------------------------------------


@workflow("defaults-test-wait")
def wait_for_approval(event, step):
    try:
        return step.wait_for_event("approval", type="approval")
    except WaitTimeout as exc:
        return f"timed out: {exc}"


def test_a_wait_without_a_timeout_times_out_after_twenty_four_hours():
    inst = workflows.create("defaults-test-wait")
    run_until_idle()

    advance(f"{24 * 3600 - 60} seconds")
    assert inst.status()["status"] == "waiting"
    advance("60 seconds")
    status = inst.status()
    assert status["status"] == "complete"
    assert status["output"].startswith("timed out: ")
    assert status["output"].endswith("timed out after 1 day")


# --- the default retry policy: limit 5, 10 seconds, exponential -----------------------


def always_fails() -> None:
    calls["fails"] += 1
    raise ValueError(f"failure {calls['fails']}")


@workflow("defaults-test-always-fails")
def always_failing(event, step):
    step.do("fails", always_fails)


def test_a_failing_step_is_retried_five_times_ten_seconds_apart_doubling_each_time():
    inst = workflows.create("defaults-test-always-fails")
    run_until_idle()
    assert calls["fails"] == 1

    for made, delay in enumerate([10, 20, 40, 80, 160], start=1):
        advance(f"{delay - 1} seconds")
        assert calls["fails"] == made, f"retry {made} ran before its {delay} s delay"
        assert inst.status()["status"] == "waiting"
        advance("1 second")
        assert calls["fails"] == made + 1, f"retry {made} did not run after its {delay} s delay"
    advance("1 day")

    assert calls["fails"] == 6
    assert inst.status()["status"] == "errored"
    assert inst.status()["error"] == {"type": "ValueError", "message": "failure 6"}
    assert attempts(inst) == [(attempt, "failed", "ValueError") for attempt in range(1, 7)]
    started = list(StepRun.objects.filter(step__instance_id=inst.id).values_list("started_at", flat=True))
    gaps = [round((later - earlier).total_seconds()) for earlier, later in pairwise(started)]
    assert gaps == [10, 20, 40, 80, 160]


# --- what a status forbids ------------------------------------------------------------


def refuse() -> None:
    raise NonRetryableError("the card was declined")


@workflow("defaults-test-errors")
def errors(event, step):
    step.do("refuse", refuse)


@workflow("defaults-test-waits-forever")
def waits_forever(event, step):
    step.wait_for_event("go", type="go", timeout="30 days")


def errored_instance():
    inst = workflows.create("defaults-test-errors")
    run_until_idle()
    assert inst.status()["status"] == "errored"
    return inst


def terminated_instance():
    inst = workflows.create("defaults-test-waits-forever")
    run_until_idle()
    inst.terminate()
    return inst


@pytest.mark.parametrize("finished", [errored_instance, terminated_instance], ids=["errored", "terminated"])
def test_an_event_sent_to_a_finished_instance_is_refused_and_not_stored(finished):
    inst = finished()
    before = inst.status()

    with pytest.raises(InvalidState, match=before["status"]):
        inst.send_event("go", {"late": True})

    assert Event.objects.filter(instance_id=inst.id).count() == 0
    assert inst.status() == before


def resume_myself(instance_id: str) -> str:
    try:
        workflows.get(instance_id).resume()
    except InvalidState as exc:
        return f"refused: {exc}"
    return "resumed"


@workflow("defaults-test-resumes-itself")
def resumes_itself(event, step):
    return step.do("resume", resume_myself, step.instance_id)


def test_resuming_a_running_instance_is_refused_and_its_run_goes_on():
    inst = workflows.create("defaults-test-resumes-itself")
    run_until_idle()

    status = inst.status()
    assert status["status"] == "complete"
    assert status["output"].startswith("refused: ")
    assert "it is running" in status["output"]


# --- the clock and the event's timestamp ----------------------------------------------


def test_reset_clock_brings_the_engine_back_to_real_time_after_advance():
    advance("1 day")
    ahead = workflows.now() - timezone.now()
    assert timedelta(hours=23, minutes=59) < ahead <= timedelta(days=1)

    reset_clock()

    assert abs(workflows.now() - timezone.now()) < timedelta(seconds=1)


@workflow("defaults-test-timestamp")
def timestamp(event, step):
    step.sleep("nap", "1 hour")  # returned by a replay, an hour after the instance was created
    return event.timestamp.isoformat()


def test_the_event_timestamp_is_the_aware_time_the_instance_was_created_on_every_replay():
    advance("1 day")  # created on the engine's clock, not the wall clock
    inst = workflows.create("defaults-test-timestamp")
    run_until_idle()
    advance("1 hour")

    stamp = datetime.fromisoformat(inst.status()["output"])
    assert stamp.utcoffset() is not None
    assert stamp == Instance.objects.get(pk=inst.id).created_at
    assert stamp - timezone.now() > timedelta(hours=23)
