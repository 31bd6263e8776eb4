"""step.do(..., rollback=undo): compensations run newest first when the instance fails for
good, or is terminated with rollback=True; each is a recorded, retried step."""

import logging

import pytest

import workflows
from workflows import workflow
from workflows.models import Step
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

log: list[str] = []
flaky = {"refund failures left": 0}


@pytest.fixture(autouse=True)
def _reset():
    log.clear()
    flaky["refund failures left"] = 0


def act(label: str) -> str:
    log.append(label)
    return f"{label}-id"


def undo(result: str) -> None:
    if result == "charge-id" and flaky["refund failures left"]:
        flaky["refund failures left"] -= 1
        raise ConnectionError("refund API down")
    log.append(f"undo {result}")


def ship_fails() -> None:
    log.append("ship")
    raise RuntimeError("the carrier refused the parcel")


@workflow("rollback-test-saga")
def saga(event, step):
    step.do("reserve stock", act, "reserve", rollback=undo)
    step.do("note", act, "note")  # nothing to undo
    step.do("charge card", act, "charge", rollback=undo, retries={"limit": 3, "delay": "1 minute"})
    if (event.payload or {}).get("wait"):
        step.wait_for_event("confirmation", type="confirm", timeout="1 day")
    step.do("ship", ship_fails, retries={"limit": 0})
    return "shipped"


def test_a_failure_no_one_catches_runs_the_compensations_newest_first_then_errors():
    inst = workflows.create("rollback-test-saga")
    run_until_idle()

    assert log == ["reserve", "note", "charge", "ship", "undo charge-id", "undo reserve-id"]
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"] == {"type": "RuntimeError", "message": "the carrier refused the parcel"}
    keys = list(Step.objects.filter(instance_id=inst.id).order_by("id").values_list("key", "status"))
    assert keys[-2:] == [("rollback charge card#1", "succeeded"), ("rollback reserve stock#1", "succeeded")]


def test_a_compensation_is_retried_by_its_steps_policy_and_not_run_twice():
    flaky["refund failures left"] = 2
    inst = workflows.create("rollback-test-saga")
    run_until_idle()
    assert inst.status()["status"] == "waiting"  # the refund waits out its retry delay

    advance("1 minute")
    advance("2 minutes")

    assert inst.status()["status"] == "errored"
    assert log.count("undo charge-id") == 1
    assert log.count("undo reserve-id") == 1
    assert log.count("reserve") == 1  # replays do not run completed steps


@workflow("rollback-test-caught")
def caught(event, step):
    step.do("reserve stock", act, "reserve", rollback=undo)
    try:
        step.do("ship", ship_fails, retries={"limit": 0})
    except workflows.StepFailed:
        return "handled"


def test_a_failure_the_workflow_handles_runs_no_compensation():
    inst = workflows.create("rollback-test-caught")
    run_until_idle()
    assert inst.status()["output"] == "handled"
    assert log == ["reserve", "ship"]


def test_terminate_with_rollback_compensates_the_completed_steps_and_runs_nothing_further():
    inst = workflows.create("rollback-test-saga", params={"wait": True})
    run_until_idle()
    assert inst.status()["status"] == "waiting"

    inst.terminate(rollback=True)
    run_until_idle()

    assert inst.status()["status"] == "terminated"
    assert log == ["reserve", "note", "charge", "undo charge-id", "undo reserve-id"]  # no "ship"


def terminate_myself_with_rollback(instance_id: str) -> str:
    workflows.get(instance_id).terminate(rollback=True)
    log.append("asked")
    return "asked"


@workflow("rollback-test-while-running")
def while_running(event, step):
    step.do("reserve stock", act, "reserve", rollback=undo)
    step.do("ask", terminate_myself_with_rollback, step.instance_id, rollback=undo)
    step.do("ship", act, "ship")


def test_terminate_with_rollback_while_a_step_runs_lets_it_finish_then_compensates():
    inst = workflows.create("rollback-test-while-running")
    run_until_idle()
    assert inst.status()["status"] == "terminated"
    assert log == ["reserve", "asked", "undo asked", "undo reserve-id"]


@workflow("rollback-test-asked-in-the-last-step")
def asked_in_the_last_step(event, step):
    step.do("reserve stock", act, "reserve", rollback=undo)
    return step.do("ask", terminate_myself_with_rollback, step.instance_id)


def test_terminate_with_rollback_during_the_last_step_still_compensates_instead_of_completing():
    inst = workflows.create("rollback-test-asked-in-the-last-step")
    run_until_idle()
    assert inst.status() == {"status": "terminated", "output": None, "error": None}
    assert log == ["reserve", "asked", "undo reserve-id"]


def test_terminate_without_rollback_compensates_nothing():
    inst = workflows.create("rollback-test-saga", params={"wait": True})
    run_until_idle()
    inst.terminate()
    run_until_idle()
    assert log == ["reserve", "note", "charge"]


@workflow("rollback-test-not-callable")
def not_callable(event, step):
    step.do("reserve stock", act, "reserve", rollback="undo")


def test_a_rollback_that_is_not_callable_errors_the_instance_clearly():
    inst = workflows.create("rollback-test-not-callable")
    run_until_idle()
    assert inst.status()["error"] == {
        "type": "TypeError",
        "message": "step \"reserve stock\": rollback 'undo' is not callable",
    }
    assert log == []


def refund_refused(result: str) -> None:
    log.append(f"refuse {result}")
    raise ConnectionError("the refund was refused")


@workflow("rollback-test-compensation-fails")
def compensation_fails(event, step):
    step.do("reserve stock", act, "reserve", rollback=undo)
    step.do("charge card", act, "charge", rollback=refund_refused, retries={"limit": 0})
    step.do("ship", ship_fails, retries={"limit": 0})


def test_a_compensation_that_fails_for_good_is_logged_and_the_others_still_run(caplog):
    inst = workflows.create("rollback-test-compensation-fails", id="saga-1")
    with caplog.at_level(logging.WARNING, logger="workflows"):
        run_until_idle()

    assert log == ["reserve", "charge", "ship", "refuse charge-id", "undo reserve-id"]
    assert inst.status()["status"] == "errored"
    assert any(
        message.startswith("instance saga-1: rollback charge card failed for good: ")
        and "the refund was refused" in message
        for message in caplog.messages
    )


@workflow("rollback-test-child")
def rollback_child(event, step):
    step.do("reserve stock", act, "child reserve", rollback=undo)
    step.wait_for_event("go", type="go", timeout="1 day")


@workflow("rollback-test-parent")
def rollback_parent(event, step):
    step.do("note", act, "parent note", rollback=undo)
    return step.run_workflow("child", "rollback-test-child")


def test_terminate_with_rollback_rolls_back_the_unfinished_children_too():
    parent = workflows.create("rollback-test-parent", id="parent")
    run_until_idle()

    parent.terminate(rollback=True)
    run_until_idle()

    assert sorted(log) == sorted(
        ["parent note", "child reserve", "undo child reserve-id", "undo parent note-id"]
    )
    assert workflows.get("parent:child").status()["status"] == "terminated"
    assert parent.status()["status"] == "terminated"


def test_terminate_with_rollback_before_the_first_run_runs_no_step_and_terminates():
    inst = workflows.create("rollback-test-saga")

    inst.terminate(rollback=True)
    run_until_idle()

    assert inst.status() == {"status": "terminated", "output": None, "error": None}
    assert log == []
