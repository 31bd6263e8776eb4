"""Replaying a workflow whose code no longer matches its history is an error naming the
step, never a silent second branch; `step.patched` lets code change under running
instances (api.md section 7).

`code` stands for the deployed version of the workflow: a test records history with one
version, "deploys" another and resumes the instance.
"""

from collections import Counter

import pytest

import workflows
from workflows import workflow
from workflows.models import Step
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

code = {"version": 1}
calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _first_version():
    code["version"] = 1
    calls.clear()
    yield
    code["version"] = 1


def run(label):
    calls[label] += 1
    return label


def deploy(version):
    code["version"] = version


def errored_with_nondeterminism(inst):
    status = inst.status()
    assert status["status"] == "errored", status
    assert status["error"]["type"] == workflows.NonDeterminismError.__name__
    return status["error"]["message"]


@workflow("determinism-versions")
def versioned_flow(event, step):
    version = code["version"]
    if version == 2:  # "charge" renamed
        names = ["load", "charge card"]
    elif version == 3:  # "charge" removed
        names = ["load"]
    elif version == 4:  # "load" and "charge" swapped
        names = ["charge", "load"]
    else:
        names = ["load", "charge"]
    for name in names:
        step.do(name, run, name)
    step.sleep("cool-off", "1 hour")
    step.do("email", run, "email")
    if version == 5:  # a step added after the history: that is fine
        step.do("survey", run, "survey")
    return version


def start_and_wait_in_cool_off():
    inst = workflows.create("determinism-versions")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    assert calls == {"load": 1, "charge": 1}
    return inst


def test_a_renamed_step_errors_the_instance_naming_the_recorded_step_and_runs_nothing_new():
    inst = start_and_wait_in_cool_off()
    deploy(2)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'new step "charge card"' in message
    assert 'never reached recorded step "charge"' in message
    assert calls == {"load": 1, "charge": 1}


def test_a_removed_step_errors_the_instance_naming_it():
    inst = start_and_wait_in_cool_off()
    deploy(3)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'reached step "cool-off" before step "charge"' in message
    assert calls == {"load": 1, "charge": 1}


def test_reordered_steps_error_the_instance_naming_them():
    inst = start_and_wait_in_cool_off()
    deploy(4)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'reached step "charge" before step "load"' in message
    assert "email" not in calls


def test_a_step_added_after_the_recorded_history_just_runs():
    inst = start_and_wait_in_cool_off()
    deploy(5)
    advance("1 hour")
    assert inst.status()["output"] == 5
    assert calls == {"load": 1, "charge": 1, "email": 1, "survey": 1}


@workflow("determinism-kind")
def kind_flow(event, step):
    if code["version"] == 1:
        step.sleep("pause", "1 hour")
    else:
        step.do("pause", run, "pause")
    step.wait_for_event("go", type="go")


def test_a_recorded_step_run_as_another_kind_errors_the_instance():
    inst = workflows.create("determinism-kind")
    run_until_idle()
    deploy(2)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'step "pause" was recorded as a sleep step but the workflow now runs it as a do step' in message
    assert calls == {}


@workflow("determinism-swallowed-early")
def swallowing_early_flow(event, step):
    try:
        step.do("first" if code["version"] == 1 else "first renamed", run, "first")
    except Exception:
        return "carried on"
    step.sleep("nap", "1 hour")
    return "done"


def test_catching_the_error_in_the_workflow_does_not_let_the_instance_complete():
    inst = workflows.create("determinism-swallowed-early")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    deploy(2)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'never reached recorded step "first"' in message


# --- step.patched ----------------------------------------------------------------------


@workflow("determinism-patched")
def patched_flow(event, step):
    step.do("charge", run, "charge")
    if code["version"] == 2 and step.patched("send receipt"):
        step.do("receipt", run, "receipt")
        assert step.patched("send receipt")  # the same answer within a run
    step.sleep("cool-off", "1 hour")
    step.do("ship", run, "ship")
    return "receipt" in calls


def test_patched_keeps_instances_in_flight_on_the_old_path_and_sends_new_ones_down_the_new():
    old = workflows.create("determinism-patched")
    run_until_idle()
    deploy(2)
    new = workflows.create("determinism-patched")
    run_until_idle()
    assert calls == {"charge": 2, "receipt": 1}

    advance("1 hour")

    assert old.status()["status"] == new.status()["status"] == "complete"
    assert not Step.objects.filter(instance_id=old.id, name="receipt").exists()
    assert Step.objects.filter(instance_id=new.id, name="receipt").count() == 1
    assert calls == {"charge": 2, "receipt": 1, "ship": 2}
    # The new instance's replays took the new path again without rerunning the receipt.
    marker = Step.objects.get(instance_id=new.id, kind="patch")
    assert (marker.name, marker.status) == ("send receipt", "succeeded")


def test_patched_is_true_for_an_instance_started_on_the_new_code_on_every_replay():
    deploy(2)
    inst = workflows.create("determinism-patched")
    run_until_idle()
    advance("1 hour")
    assert inst.status()["output"] is True
    assert calls["receipt"] == 1


@workflow("determinism-patched-outside")
def patched_outside_flow(event, step):
    return step.patched("")


def test_a_patch_id_must_be_a_name():
    inst = workflows.create("determinism-patched-outside")
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "patch id must be a non-empty string" in inst.status()["error"]["message"]


def test_the_error_says_which_instance_and_how_to_change_a_workflow_safely():
    inst = start_and_wait_in_cool_off()
    deploy(3)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert message.startswith(f"the workflow code no longer matches the history of instance {inst.id}: ")
    assert message.endswith(
        ". Change a workflow with instances in flight under `if step.patched(...)`, or restart them."
    )


@workflow("determinism-patched-answer")
def patched_answer_flow(event, step):
    step.do("charge", run, "charge")
    answer = step.patched("send receipt") if code["version"] == 2 else None
    step.sleep("cool-off", "1 hour")
    return answer if code["version"] == 2 else step.patched("send receipt")


def test_patched_answers_false_not_just_something_falsy_while_replaying_history_from_before_it():
    old = workflows.create("determinism-patched-answer")
    run_until_idle()
    deploy(2)
    advance("1 hour")
    assert old.status()["output"] is False


def test_a_patch_marker_is_recorded_as_ended_when_the_run_takes_the_new_path():
    deploy(2)
    inst = workflows.create("determinism-patched-answer")
    run_until_idle()
    marker = Step.objects.get(instance_id=inst.id, kind="patch")
    assert (marker.status, marker.completed_at == marker.created_at) == ("succeeded", True)
    advance("1 hour")
    assert inst.status()["output"] is True


def test_reordered_steps_are_named_in_full_in_the_error():
    inst = start_and_wait_in_cool_off()
    deploy(4)
    advance("1 hour")
    assert errored_with_nondeterminism(inst) == (
        f"the workflow code no longer matches the history of instance {inst.id}: "
        'the workflow reached step "charge" before step "load", which ran before it. '
        "Change a workflow with instances in flight under `if step.patched(...)`, or restart them."
    )


@workflow("determinism-hash-in-name")
def hash_in_name_flow(event, step):
    step.do("charge #1" if code["version"] == 1 else "charge #2", run, "charge")
    step.sleep("cool-off", "1 hour")


def test_a_renamed_step_is_named_in_full_even_with_a_hash_in_its_name():
    inst = workflows.create("determinism-hash-in-name")
    run_until_idle()
    deploy(2)
    advance("1 hour")
    message = errored_with_nondeterminism(inst)
    assert 'started a new step "charge #2" but never reached recorded step "charge #1"' in message
