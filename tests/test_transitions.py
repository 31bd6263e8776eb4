"""What an instance's row says after each transition (lifecycle.py): only a waiting
instance has a wake time or an event it waits for; only a run in progress holds a lease;
only an ended instance has an ending, and terminate records no error; a restart takes
the instance from the run in progress; each change moves `updated_at`."""

from collections import Counter
from datetime import timedelta

import pytest

import workflows
from workflows import clock, workflow
from workflows.models import Instance, Step
from workflows.testing import advance, run_until_idle
from workflows.timers import tick

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


def row(inst) -> Instance:
    return Instance.objects.get(pk=inst.id)


def waits_for(inst) -> tuple[str, bool, bool]:
    """(status, has a wake time, waits for an event type)."""
    instance = row(inst)
    return instance.status, instance.wake_at is not None, instance.waiting_for != ""


@workflow("transitions-test-nap-then-wait")
def nap_then_wait(event, step):
    step.sleep("nap", "1 hour")
    return step.wait_for_event("go", type="go", timeout="1 day")


def test_only_a_waiting_instance_has_a_wake_time_or_an_event_it_waits_for():
    inst = workflows.create("transitions-test-nap-then-wait")
    run_until_idle()
    assert waits_for(inst) == ("waiting", True, False)

    clock.shift(timedelta(hours=1))
    woken_after = workflows.now()
    assert tick() == 1
    assert waits_for(inst) == ("queued", False, False)
    assert row(inst).updated_at >= woken_after

    run_until_idle()
    assert waits_for(inst) == ("waiting", True, True)
    inst.send_event("go", "now")
    assert waits_for(inst) == ("queued", False, False)

    run_until_idle()
    assert waits_for(inst) == ("complete", False, False)


@workflow("transitions-test-wait")
def wait(event, step):
    return step.wait_for_event("go", type="go", timeout="1 hour")


def test_an_instance_woken_by_its_wait_deadline_waits_for_nothing_until_it_runs():
    inst = workflows.create("transitions-test-wait")
    run_until_idle()
    clock.shift(timedelta(hours=1))

    assert tick() == 1
    assert waits_for(inst) == ("queued", False, False)


@workflow("transitions-test-fails")
def fails(event, step):
    step.do("load", lambda: "loaded")
    step.do("charge", refuse)


def refuse():
    raise workflows.NonRetryableError("the card was declined")


def ending(inst) -> tuple:
    instance = row(inst)
    return (
        instance.output,
        instance.error,
        instance.error_traceback,
        instance.failed_step_key,
        instance.finished_at is not None,
    )


def test_terminate_ends_the_instance_with_no_error_traceback_or_failed_step():
    inst = workflows.create("transitions-test-nap-then-wait")
    run_until_idle()
    inst.terminate()

    assert ending(inst) == (None, None, "", "", True)
    assert waits_for(inst) == ("terminated", False, False)


@workflow("transitions-test-completes")
def completes(event, step):
    return step.do("load", lambda: "loaded")


def test_a_completed_instance_has_its_output_and_no_error_traceback_or_failed_step():
    inst = workflows.create("transitions-test-completes")
    run_until_idle()

    assert ending(inst) == ("loaded", None, "", "", True)
    assert waits_for(inst) == ("complete", False, False)


@pytest.mark.parametrize("action", ["retry", "restart"])
def test_retry_and_restart_clear_the_ending_until_the_instance_ends_again(action):
    inst = workflows.create("transitions-test-fails")
    run_until_idle()
    output, error, traceback, failed_step, finished = ending(inst)
    assert (error["type"], "NonRetryableError" in traceback, failed_step, finished) == (
        "NonRetryableError",
        True,
        "charge#1",
        True,
    )

    getattr(inst, action)()

    assert ending(inst) == (None, None, "", "", False)
    assert row(inst).status == "queued"


def restart_myself_once(instance_id: str) -> int:
    calls["restart"] += 1
    if calls["restart"] == 1:
        workflows.get(instance_id).restart()
    return calls["restart"]


def record(label: str) -> str:
    calls[label] += 1
    return label


@workflow("transitions-test-restart-mid-step")
def restart_mid_step(event, step):
    step.do("restart myself", restart_myself_once, step.instance_id)
    step.do("after", record, "after")
    return "done"


def test_a_restart_while_a_step_runs_takes_the_instance_from_that_run_and_starts_again():
    inst = workflows.create("transitions-test-restart-mid-step")
    run_until_idle()

    assert inst.status() == {"status": "complete", "output": "done", "error": None}
    assert calls == {"restart": 2, "after": 1}
    steps = Step.objects.filter(instance_id=inst.id).order_by("generation", "id")
    assert list(steps.values_list("generation", "key", "status")) == [
        (1, "restart myself#1", "running"),  # its run could record nothing more
        (2, "restart myself#1", "succeeded"),
        (2, "after#1", "succeeded"),
    ]
    assert row(inst).lease_token == ""


@workflow("transitions-test-two-naps")
def two_naps(event, step):
    step.sleep("first", "1 hour")
    step.do("between", record, "between")
    step.sleep("second", "1 hour")
    return "rested"


def test_each_sleep_keeps_the_time_it_ended_and_the_record_of_other_instances_and_generations_is_left_alone():
    earlier = workflows.create("transitions-test-two-naps")
    run_until_idle()
    earlier.restart()  # its first generation's nap is left unfinished, for the record
    run_until_idle()
    terminated = workflows.create("transitions-test-two-naps")
    run_until_idle()
    terminated.terminate()

    advance("1 hour")
    first_ended = Step.objects.get(instance_id=earlier.id, generation=2, key="first#1").completed_at
    advance("1 hour")

    assert earlier.status()["output"] == "rested"
    naps = Step.objects.filter(kind="sleep").order_by("instance_id", "generation", "id")
    assert [(s.instance_id, s.generation, s.key, s.status) for s in naps] == sorted(
        [
            (earlier.id, 1, "first#1", "sleeping"),
            (earlier.id, 2, "first#1", "succeeded"),
            (earlier.id, 2, "second#1", "succeeded"),
            (terminated.id, 1, "first#1", "sleeping"),
        ]
    )
    assert Step.objects.get(instance_id=earlier.id, generation=2, key="first#1").completed_at == first_ended
