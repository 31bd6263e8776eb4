"""step.sleep and step.sleep_until suspend the instance until their time."""

from collections import Counter
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

import workflows
from workflows import clock, timers, workflow
from workflows.models import Instance, Step
from workflows.tasks import run_instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


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


def test_a_zero_sleep_does_not_suspend_the_instance_and_records_when_it_ended():
    inst = workflows.create("sleep-test-zero")
    assert run_instance(inst.id) == "complete"
    nap = Step.objects.get(instance_id=inst.id, kind="sleep")
    assert (nap.status, nap.completed_at == nap.wake_at) == ("succeeded", True)


@workflow("sleep-test-code-after")
def code_after_flow(event, step):
    calls["before"] += 1
    step.sleep("nap", "1 hour")
    calls["after"] += 1  # code outside steps runs on every replay, but never before the sleep ends
    return "woke"


def test_the_workflow_function_goes_no_further_than_a_sleep_until_it_is_over():
    inst = workflows.create("sleep-test-code-after")
    assert run_instance(inst.id) == "suspended"
    assert calls == {"before": 1}
    advance("1 hour")
    assert calls == {"before": 2, "after": 1}
    assert inst.status()["output"] == "woke"


class NoOffset(tzinfo):
    """A timezone that does not know its offset: a datetime with it is not aware."""

    def utcoffset(self, dt):
        return None


@workflow("sleep-test-until-value")
def until_value_flow(event, step):
    when = {"text": "tomorrow", "true": True, "no offset": datetime(2030, 1, 1, tzinfo=NoOffset())}
    step.sleep_until("until", when[event.payload])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("text", "sleep_until needs an aware datetime or epoch seconds, got 'tomorrow'"),
        ("true", "sleep_until needs an aware datetime or epoch seconds, got True"),
        (
            "no offset",
            "sleep_until needs an aware datetime (with a timezone), got datetime.datetime(2030, 1, 1, 0, 0",
        ),
    ],
)
def test_sleep_until_refuses_what_is_neither_an_aware_datetime_nor_epoch_seconds(value, message):
    inst = workflows.create("sleep-test-until-value", params=value)
    run_until_idle()
    error = inst.status()["error"]
    assert error["type"] == "ValueError"
    assert error["message"].startswith(message)


def pause_myself(instance_id: str) -> None:
    workflows.get(instance_id).pause()


@workflow("sleep-test-paused-before-sleep")
def paused_before_sleep_flow(event, step):
    step.do("pause myself", pause_myself, step.instance_id)
    step.sleep("nap", "1 hour")
    return "woke"


def test_a_paused_instance_starts_no_sleep_until_it_is_resumed():
    inst = workflows.create("sleep-test-paused-before-sleep")
    assert run_instance(inst.id) == "stopped"
    assert inst.status()["status"] == "paused"
    assert not Step.objects.filter(instance_id=inst.id, kind="sleep").exists()

    inst.resume()
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    advance("1 hour")
    assert inst.status()["output"] == "woke"
