"""step.sleep and step.sleep_until suspend the instance until their time."""

from datetime import UTC, datetime, timedelta

import pytest

import workflows
from workflows import clock, timers, workflow
from workflows.models import Instance, Step
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db


@workflow("sleep-test-month")
def month_flow(event, step):
    step.sleep("a month", "30 days")
    return "woke"


def test_a_thirty_day_sleep_is_tested_in_milliseconds():
    inst = workflows.create("sleep-test-month")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    advance("29 days")
    assert inst.status()["status"] == "waiting"
    advance("1 day")
    assert inst.status()["output"] == "woke"


def test_a_sleeping_instance_holds_no_lease_and_records_its_wake_time():
    inst = workflows.create("sleep-test-month")
    run_until_idle()
    row = Instance.objects.get(pk=inst.id)
    assert row.lease_token == ""
    assert row.wake_at - row.created_at >= timedelta(days=30)


def test_the_timer_that_wakes_a_sleeper_records_its_sleep_over_and_the_run_only_replays_it():
    inst = workflows.create("sleep-test-month")
    run_until_idle()
    clock.shift(timedelta(days=30))

    assert timers.tick() == 1

    nap = Step.objects.get(instance_id=inst.id)
    assert nap.status == "succeeded"
    assert nap.completed_at >= nap.wake_at
    assert Instance.objects.get(pk=inst.id).status == "queued"
    run_until_idle()
    assert inst.status()["output"] == "woke"
    assert Step.objects.get(instance_id=inst.id).completed_at == nap.completed_at  # not written again


@workflow("sleep-test-until")
def until_flow(event, step):
    step.sleep_until("until", event.payload["when"])
    return "woke"


def test_sleep_until_an_epoch_time_wakes_at_that_time():
    when = datetime.now(UTC) + timedelta(hours=3)
    inst = workflows.create("sleep-test-until", params={"when": when.timestamp()})
    run_until_idle()
    advance("2 hours")
    assert inst.status()["status"] == "waiting"
    advance("1 hour")
    assert inst.status()["status"] == "complete"


@workflow("sleep-test-until-datetime")
def until_datetime_flow(event, step):
    step.sleep_until("until", datetime.fromisoformat(event.payload["when"]))
    return "woke"


def test_sleep_until_an_aware_datetime_in_the_past_returns_at_once():
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    inst = workflows.create("sleep-test-until-datetime", params={"when": past})
    run_until_idle()
    assert inst.status()["status"] == "complete"


def test_sleep_until_a_naive_datetime_is_refused_clearly():
    inst = workflows.create("sleep-test-until-datetime", params={"when": "2030-01-01T00:00:00"})
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "aware datetime" in inst.status()["error"]["message"]


@workflow("sleep-test-zero")
def zero_flow(event, step):
    step.sleep("no time", 0)
    return "done"


def test_a_zero_sleep_returns_at_once():
    inst = workflows.create("sleep-test-zero")
    run_until_idle()
    assert inst.status()["status"] == "complete"


@workflow("sleep-test-bad-duration")
def bad_duration_flow(event, step):
    step.sleep("nap", "a while")


def test_a_bad_sleep_duration_errors_the_instance_naming_the_value():
    inst = workflows.create("sleep-test-bad-duration")
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "'a while'" in inst.status()["error"]["message"]


@workflow("sleep-test-loop")
def loop_flow(event, step):
    for _day in range(3):
        step.sleep("daily", "1 day")
    return "three days later"


def test_repeated_sleeps_each_wait_their_own_time():
    inst = workflows.create("sleep-test-loop")
    run_until_idle()
    advance("1 day")
    advance("1 day")
    assert inst.status()["status"] == "waiting"
    advance("1 day")
    assert inst.status()["output"] == "three days later"
