"""The timer queues a run a moment before its wake-up (DURABLE_WAKE_AHEAD_SECONDS), so that
the queue, the dispatch to a worker and the claim are done by the time it is due; the run
waits out the rest in its worker. Nothing ever continues before its time."""

from datetime import timedelta

import pytest

import workflows
from workflows import clock, lifecycle, timers, workflow
from workflows.definition import RetryPolicy
from workflows.models import Instance, Step, StepRun
from workflows.tasks import run_instance
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

AHEAD = timedelta(seconds=0.05)  # the default


@workflow("ahead-test-nap")
def nap_flow(event, step):
    step.sleep("nap", "10 seconds")
    return step.do("after", lambda: clock.now().isoformat())


def asleep(name: str, **create) -> tuple[workflows.Instance, object]:
    inst = workflows.create(name, **create)
    run_until_idle()
    row = Instance.objects.get(pk=inst.id)
    assert row.status == "waiting"
    return inst, row.wake_at


def until_just_before(wake_at, margin=timedelta(seconds=0.03)) -> None:
    clock.shift(wake_at - margin - clock.now())


def test_the_timer_queues_a_sleeper_that_much_ahead_and_no_earlier():
    inst, wake_at = asleep("ahead-test-nap")
    until_just_before(wake_at, margin=timedelta(seconds=0.2))
    assert lifecycle.wake_due_instances(now=clock.now(), ahead=AHEAD) == 0
    until_just_before(wake_at)
    assert timers.tick() == 1
    assert Instance.objects.get(pk=inst.id).status == "queued"
    # Recorded over as of its wake time, still to come: the run waits until then.
    nap = Step.objects.get(instance_id=inst.id, name="nap")
    assert (nap.status, nap.completed_at) == ("succeeded", wake_at)


def test_a_run_queued_ahead_waits_out_its_sleep_and_then_carries_on():
    inst, wake_at = asleep("ahead-test-nap")
    until_just_before(wake_at)
    timers.tick()
    run_until_idle()
    assert inst.status()["status"] == "complete"
    nap = Step.objects.get(instance_id=inst.id, name="nap")
    assert nap.status == "succeeded" and nap.completed_at >= wake_at
    assert workflows.get(inst.id).status()["output"] >= wake_at.isoformat()


def test_a_run_woken_further_ahead_than_the_setting_suspends_again():
    inst, wake_at = asleep("ahead-test-nap")
    until_just_before(wake_at, margin=timedelta(seconds=5))
    assert lifecycle.wake_due_instances(now=clock.now(), ahead=timedelta(seconds=10)) == 1
    run_until_idle()
    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.wake_at) == ("waiting", wake_at)


def test_a_sleeper_queued_by_other_means_within_the_time_ahead_waits_out_its_sleep_in_this_run():
    """A resume (not the timer) queues it with its sleep still recorded as sleeping."""
    inst, wake_at = asleep("ahead-test-nap")
    inst.pause()
    inst.resume()
    until_just_before(wake_at)

    assert run_instance(inst.id) == "complete"
    nap = Step.objects.get(instance_id=inst.id, name="nap")
    assert nap.status == "succeeded" and nap.completed_at >= wake_at
    assert inst.status()["output"] >= wake_at.isoformat()


failures = []


@workflow("ahead-test-retry")
def retry_flow(event, step):
    def flaky():
        failures.append(clock.now())
        if len(failures) == 1:
            raise RuntimeError("once")
        return "ok"

    return step.do("flaky", flaky, retries=RetryPolicy(limit=1, delay="10 seconds"))


def test_a_retry_queued_ahead_is_attempted_no_earlier_than_its_delay():
    failures.clear()
    inst, wake_at = asleep("ahead-test-retry")
    until_just_before(wake_at)
    assert timers.tick() == 1
    run_until_idle()
    assert inst.status()["output"] == "ok"
    second = StepRun.objects.filter(step__instance_id=inst.id).order_by("started_at").last()
    assert second.started_at >= wake_at
    assert failures[1] >= wake_at


@workflow("ahead-test-wait")
def wait_flow(event, step):
    return step.wait_for_event("payment", type="payment", timeout="10 seconds")


def test_a_wait_queued_ahead_of_its_deadline_times_out_no_earlier():
    inst, deadline = asleep("ahead-test-wait")
    until_just_before(deadline)
    timers.tick()
    run_until_idle()
    assert inst.status()["status"] == "errored"
    wait = Step.objects.get(instance_id=inst.id)
    assert wait.status == "timed_out" and wait.completed_at >= deadline


def test_an_event_sent_while_the_run_is_queued_ahead_is_received():
    inst, deadline = asleep("ahead-test-wait")
    until_just_before(deadline)
    timers.tick()
    inst.send_event("payment", {"amount": 5})
    run_until_idle()
    assert inst.status()["output"] == {"amount": 5}


def test_the_timer_sleeps_until_a_wake_up_less_the_time_ahead():
    _, wake_at = asleep("ahead-test-nap")
    now = clock.now()
    assert lifecycle.seconds_until_next_wake(now=now, ahead=AHEAD) == pytest.approx(
        (wake_at - now - AHEAD).total_seconds()
    )


@pytest.fixture
def queued_ahead_and_timed(monkeypatch):
    """A sleeper the timer has queued ahead of its wake-up, and the wake-ups the metrics
    are told of."""
    from workflows import metrics

    observed = []
    monkeypatch.setattr(metrics, "record_wake", observed.append)
    inst, wake_at = asleep("ahead-test-nap")
    until_just_before(wake_at)
    timers.tick()
    return inst, observed


def test_a_run_queued_ahead_is_timed_as_on_time_not_early(queued_ahead_and_timed):
    from workflows import metrics

    inst, observed = queued_ahead_and_timed
    metrics.record_run_start(list(Step.objects.filter(instance_id=inst.id)), clock.now())
    assert observed == [0.0]


def test_a_run_claimed_ahead_of_its_sleeper_is_timed_from_the_steps_it_loaded_as_on_time(
    queued_ahead_and_timed,
):
    """The run itself reports its wake-up to the metrics (record_run_start), as of its claim."""
    inst, observed = queued_ahead_and_timed
    run_instance(inst.id)
    assert observed == [0.0]
    assert inst.status()["status"] == "complete"
