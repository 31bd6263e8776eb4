"""pause, resume, terminate, restart and retry, and the statuses that allow them."""

from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import workflows
from workflows import InvalidState, workflow
from workflows.models import Instance, Step
from workflows.services import apply_lifecycle_action
from workflows.signals import instance_finished
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()
broken = {"charge": True}


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    broken["charge"] = True


def record(label):
    calls[label] += 1
    return label


def charge():
    calls["charge"] += 1
    if broken["charge"]:
        raise ConnectionError("payment API unreachable")
    return "charged"


@workflow("lifecycle-test-order")
def order_flow(event, step):
    step.do("load", record, "load")
    step.do("charge", charge, retries={"limit": 1, "delay": 0})
    step.sleep("cool-off", "1 hour")
    step.do("ship", record, "ship")
    return "shipped"


def test_retry_continues_an_errored_instance_from_its_failed_step_with_fresh_attempts():
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    assert inst.status()["status"] == "errored"
    assert calls == {"load": 1, "charge": 2}

    broken["charge"] = False
    inst.retry()
    run_until_idle()
    advance("1 hour")

    assert inst.status() == {"status": "complete", "output": "shipped", "error": None}
    assert calls == {"load": 1, "charge": 3, "ship": 1}
    assert Step.objects.get(key="charge#1").attempts == 1


def test_retry_gives_the_failed_step_its_whole_retry_budget_again():
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.retry()
    run_until_idle()
    assert calls["charge"] == 4  # two attempts, then two more after retry()
    assert inst.status()["status"] == "errored"


def test_retry_puts_the_failed_step_back_to_unfinished_with_no_attempts():
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.retry()

    charge_step = Step.objects.get(instance_id=inst.id, key="charge#1")
    assert (charge_step.status, charge_step.attempts, charge_step.completed_at) == ("retrying", 0, None)


def test_retry_leaves_the_failed_steps_of_other_instances_as_they_were_recorded():
    retried = workflows.create("lifecycle-test-order", id="retried")
    workflows.create("lifecycle-test-order", id="left-alone")
    run_until_idle()

    broken["charge"] = False
    retried.retry()
    run_until_idle()
    advance("1 hour")

    assert retried.status()["status"] == "complete"
    assert workflows.get("left-alone").status()["status"] == "errored"
    left = Step.objects.get(instance_id="left-alone", key="charge#1")
    assert (left.status, left.attempts) == ("failed", 2)


def test_retry_after_a_restart_leaves_the_earlier_generation_as_it_was_recorded():
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.restart()
    run_until_idle()
    assert inst.status()["status"] == "errored"

    inst.retry()

    steps = Step.objects.filter(instance_id=inst.id, key="charge#1").order_by("generation")
    assert list(steps.values_list("generation", "status", "attempts")) == [
        (1, "failed", 2),
        (2, "retrying", 0),
    ]


@workflow("lifecycle-test-handled-failure")
def handled_failure_flow(event, step):
    try:
        step.do("charge", charge, retries={"limit": 0})
    except workflows.StepFailed:
        step.do("refund", record, "refund")
    step.do("ship", ship)
    return "shipped"


def ship():
    calls["ship"] += 1
    if calls["ship"] == 1:
        raise workflows.NonRetryableError("courier down")
    return "shipped"


def test_retry_reruns_only_the_step_that_errored_the_instance_not_failures_the_workflow_handled():
    inst = workflows.create("lifecycle-test-handled-failure")
    run_until_idle()
    assert inst.status()["error"] == {"type": "NonRetryableError", "message": "courier down"}
    assert calls == {"charge": 1, "refund": 1, "ship": 1}

    broken["charge"] = False  # a retry that reran "charge" would now charge the customer
    inst.retry()
    run_until_idle()

    assert inst.status() == {"status": "complete", "output": "shipped", "error": None}
    assert calls == {"charge": 1, "refund": 1, "ship": 2}
    assert Step.objects.get(key="charge#1").status == "failed"


@workflow("lifecycle-test-bug-in-workflow")
def bug_flow(event, step):
    step.do("load", record, "load")
    if broken["charge"]:
        raise RuntimeError("a bug in the workflow code, since fixed")
    return "fixed"


def test_retry_after_a_bug_outside_any_step_replays_the_workflow_keeping_its_steps():
    inst = workflows.create("lifecycle-test-bug-in-workflow")
    run_until_idle()
    assert inst.status()["status"] == "errored"
    broken["charge"] = False
    inst.retry()
    run_until_idle()
    assert inst.status()["output"] == "fixed"
    assert calls == {"load": 1}


def test_restart_discards_step_results_and_runs_from_the_start_with_the_same_params():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order", params={"order": 1})
    run_until_idle()
    advance("1 hour")
    assert inst.status()["status"] == "complete"

    inst.restart()
    assert inst.status() == {"status": "queued", "output": None, "error": None}
    run_until_idle()
    advance("1 hour")

    assert inst.status()["status"] == "complete"
    assert calls == {"load": 2, "charge": 2, "ship": 2}
    row = Instance.objects.get(pk=inst.id)
    assert (row.generation, row.params) == (2, {"order": 1})


def test_restart_from_a_step_keeps_the_steps_before_it_and_runs_that_step_and_the_rest_again():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    advance("1 hour")
    assert calls == {"load": 1, "charge": 1, "ship": 1}

    inst.restart(from_step="charge")
    run_until_idle()
    advance("1 hour")

    assert inst.status()["output"] == "shipped"
    assert calls == {"load": 1, "charge": 2, "ship": 2}
    row = Instance.objects.get(pk=inst.id)
    kept = Step.objects.get(instance=row, generation=row.generation, name="load")
    assert kept.runs.count() == 1  # its attempt is kept with it
    # The previous generation stays as it was recorded.
    assert Step.objects.filter(instance=row, generation=row.generation - 1).count() == 4


def load_number() -> int:
    calls["load"] += 1
    return calls["load"]


@workflow("lifecycle-test-numbered-load")
def numbered_load_flow(event, step):
    number = step.do("load", load_number)
    step.do("charge", record, "charge")
    step.sleep("cool-off", "1 hour")
    return number


def test_restart_from_a_step_keeps_what_this_instance_recorded_in_its_latest_generation():
    first = workflows.create("lifecycle-test-numbered-load", id="first")
    second = workflows.create("lifecycle-test-numbered-load", id="second")
    run_until_idle()  # loads 1 and 2
    first.restart()
    second.restart()
    run_until_idle()  # generation 2: loads 3 and 4

    second.restart(from_step="charge")
    run_until_idle()
    advance("1 hour")

    assert second.status()["output"] == 4
    assert calls["load"] == 4  # nothing loaded again
    kept = Step.objects.filter(instance_id="second", generation=3).order_by("id")
    assert list(kept.values_list("name", "result")) == [("load", 4), ("charge", "charge"), ("cool-off", None)]


@workflow("lifecycle-test-many-steps")
def many_steps_flow(event, step):
    for number in range(event.payload):
        step.do(f"step {number}", record, "step")
    return step.do("last", record, "last")


def test_restart_from_a_step_copies_the_steps_before_it_in_as_many_queries_however_many_they_are():
    first = workflows.create("lifecycle-test-many-steps", params=1)
    few = workflows.create("lifecycle-test-many-steps", params=2)
    many = workflows.create("lifecycle-test-many-steps", params=6)
    run_until_idle()
    first.restart(from_step="last")  # the first restart may set things up once (the counts' mark)

    queries = []
    for inst in (few, many):
        with CaptureQueriesContext(connection) as captured:
            inst.restart(from_step="last")
        queries.append(len(captured))
    assert queries[0] == queries[1]
    run_until_idle()
    kept = Step.objects.filter(instance_id=many.id, generation=2, name__startswith="step")
    assert [step.runs.count() for step in kept] == [1] * 6  # each with its attempt


def test_restart_from_the_first_step_is_a_restart_from_the_start():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.restart(from_step="load")
    run_until_idle()
    assert calls == {"load": 2, "charge": 2}


@pytest.mark.parametrize(
    ("from_step", "error"),
    [
        ("refund", 'instance "restart-me" has no recorded step named "refund" to restart from'),
        ("ship", 'has no recorded step named "ship"'),  # not reached yet
        ("", "from_step must be a non-empty string"),
        ("char\x00ge", "from_step 'char\\\\x00ge' contains a NUL character"),
    ],
)
def test_restart_from_a_step_never_recorded_is_refused_and_changes_nothing(from_step, error):
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order", id="restart-me")
    run_until_idle()
    before = list(Instance.objects.values_list("status", "generation", "wake_at"))

    with pytest.raises(ValueError, match=error):
        inst.restart(from_step=from_step)

    assert list(Instance.objects.values_list("status", "generation", "wake_at")) == before
    assert calls == {"load": 1, "charge": 1}


def test_restart_of_a_sleeping_instance_cancels_the_sleep():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.restart()
    run_until_idle()
    assert calls == {"load": 2, "charge": 2}
    assert inst.status()["status"] == "waiting"


def test_pause_stops_new_steps_until_resume():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.pause()
    advance("2 hours")
    assert inst.status()["status"] == "paused"
    assert calls["ship"] == 0

    inst.resume()
    run_until_idle()
    assert inst.status()["status"] == "complete"
    assert calls["ship"] == 1


@workflow("lifecycle-test-pause-mid-step")
def pause_mid_step_flow(event, step):
    step.do("pause myself", workflows.get(event.instance_id).pause)
    step.do("after", record, "after")
    return "done"


def test_a_step_already_running_when_paused_finishes_and_is_recorded():
    inst = workflows.create("lifecycle-test-pause-mid-step")
    run_until_idle()
    assert inst.status()["status"] == "paused"
    assert Step.objects.get(key="pause myself#1").status == "succeeded"
    assert calls["after"] == 0
    assert Instance.objects.get(pk=inst.id).lease_token == ""

    inst.resume()
    run_until_idle()
    assert inst.status()["output"] == "done"
    assert calls["after"] == 1


def test_a_paused_queued_instance_does_not_start():
    inst = workflows.create("lifecycle-test-order")
    inst.pause()
    run_until_idle()
    assert calls == {}
    assert inst.status()["status"] == "paused"


def test_terminate_ends_the_instance_for_good():
    broken["charge"] = False
    inst = workflows.create("lifecycle-test-order")
    run_until_idle()
    inst.terminate()
    advance("2 hours")
    assert inst.status()["status"] == "terminated"
    assert calls["ship"] == 0
    with pytest.raises(InvalidState):
        inst.resume()


@workflow("lifecycle-test-terminate-mid-step")
def terminate_mid_step_flow(event, step):
    step.do("terminate myself", workflows.get(event.instance_id).terminate)
    step.do("after", record, "after")


def test_a_run_in_progress_records_nothing_after_terminate():
    inst = workflows.create("lifecycle-test-terminate-mid-step")
    run_until_idle()
    assert inst.status()["status"] == "terminated"
    assert calls["after"] == 0
    assert not Step.objects.filter(key="terminate myself#1", status="succeeded").exists()


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("resume", "queued"),
        ("retry", "queued"),
        ("retry", "complete"),
        ("pause", "complete"),
        ("pause", "paused"),
        ("terminate", "complete"),
        ("terminate", "terminated"),
        ("resume", "waiting"),
    ],
)
def test_lifecycle_calls_that_make_no_sense_raise_invalid_state(action, status):
    inst = workflows.create("lifecycle-test-order")
    Instance.objects.filter(pk=inst.id).update(status=status)
    with pytest.raises(InvalidState, match=f"it is {status}"):
        getattr(inst, action)()
    assert inst.status()["status"] == status


def test_a_refused_lifecycle_call_says_which_statuses_allow_it():
    inst = workflows.create("lifecycle-test-order", id="order-1")
    run_until_idle()

    with pytest.raises(InvalidState) as refused:
        inst.pause()

    assert str(refused.value) == (
        'cannot pause instance "order-1": it is errored (only possible when queued or running or waiting)'
    )


def test_an_unknown_lifecycle_action_is_refused_naming_the_actions_there_are():
    inst = workflows.create("lifecycle-test-order")
    with pytest.raises(ValueError) as refused:
        apply_lifecycle_action(instance_id=inst.id, action="explode")
    assert str(refused.value) == "unknown action 'explode': use pause, resume, terminate, restart, retry"
    assert inst.status()["status"] == "queued"


@pytest.mark.parametrize("action", ["pause", "resume", "terminate", "restart", "retry", "status"])
def test_lifecycle_calls_on_an_unknown_id_raise_instance_not_found(action):
    with pytest.raises(workflows.InstanceNotFound, match="ghost"):
        getattr(workflows.Instance("ghost"), action)()


@pytest.mark.parametrize("impossible_id", ["gh\x00st", "x" * 101, ""])
def test_lifecycle_calls_on_an_id_no_instance_can_have_raise_instance_not_found_without_a_lookup(
    impossible_id,
):
    """(A NUL in a query is a database error on PostgreSQL.)"""
    with CaptureQueriesContext(connection) as captured, pytest.raises(workflows.InstanceNotFound):
        apply_lifecycle_action(instance_id=impossible_id, action="pause")
    assert not [query for query in captured if "workflows_instance" in query["sql"]]


def test_instance_finished_is_signalled_when_an_instance_errors_completes_or_is_terminated():
    seen = []

    def receiver(sender, instance_id, status, **kwargs):
        seen.append((instance_id, status))

    instance_finished.connect(receiver)
    try:
        failing = workflows.create("lifecycle-test-order", id="fails")
        run_until_idle()
        broken["charge"] = False
        failing.retry()
        run_until_idle()
        advance("1 hour")
        workflows.create("lifecycle-test-order", id="ends").terminate()
    finally:
        instance_finished.disconnect(receiver)
    assert seen == [("fails", "errored"), ("fails", "complete"), ("ends", "terminated")]
