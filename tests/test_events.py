"""step.wait_for_event and send_event: buffered events, one consumer, timeouts."""

import pytest

import workflows
from workflows import WaitTimeout, workflow
from workflows.models import Event, Instance, Step
from workflows.tasks import run_instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db


@workflow("events-test-approval")
def approval_flow(event, step):
    step.do("prepare", lambda: "ready")
    try:
        decision = step.wait_for_event("approval", type="approval", timeout="1 hour")
    except WaitTimeout:
        return {"timed_out": True}
    return {"decision": decision}


def test_an_event_sent_while_waiting_resumes_the_instance_with_its_payload():
    inst = workflows.create("events-test-approval")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    inst.send_event("approval", {"approved": True})
    assert inst.status()["status"] == "queued"
    run_until_idle()
    assert inst.status()["output"] == {"decision": {"approved": True}}


def test_an_event_sent_while_waiting_is_taken_by_the_wait_in_the_same_transaction():
    inst = workflows.create("events-test-approval")
    run_until_idle()

    inst.send_event("approval", {"approved": True})

    # Before any run: the resumed run only replays the wait (so nothing is left for it
    # to write, and the event cannot be taken by another wait meanwhile).
    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.wake_at, row.waiting_for) == ("queued", None, "")
    wait = Step.objects.get(instance_id=inst.id, kind="wait")
    assert (wait.status, wait.result) == ("succeeded", {"approved": True})
    assert Event.objects.get(instance_id=inst.id).consumed_by == wait
    run_until_idle()
    assert inst.status()["output"] == {"decision": {"approved": True}}


def test_an_event_of_the_awaited_type_sent_after_the_wait_timed_out_is_kept():
    inst = workflows.create("events-test-approval")
    run_until_idle()
    advance("2 hours")
    assert inst.status()["output"] == {"timed_out": True}

    with pytest.raises(workflows.InvalidState):
        inst.send_event("approval", {"approved": "late"})
    assert not Event.objects.filter(instance_id=inst.id).exists()


def test_an_event_sent_before_the_wait_is_kept_and_consumed_by_it():
    inst = workflows.create("events-test-approval")
    inst.send_event("approval", {"approved": "early"})
    run_until_idle()
    assert inst.status()["output"] == {"decision": {"approved": "early"}}


def test_the_wait_times_out_with_wait_timeout():
    inst = workflows.create("events-test-approval")
    run_until_idle()
    advance("59 minutes")
    assert inst.status()["status"] == "waiting"
    advance("1 minute")
    assert inst.status()["output"] == {"timed_out": True}


def test_an_event_of_another_type_does_not_wake_the_wait():
    inst = workflows.create("events-test-approval")
    run_until_idle()
    inst.send_event("comment", "looks fine")
    assert inst.status()["status"] == "waiting"
    run_until_idle()
    assert inst.status()["status"] == "waiting"


@workflow("events-test-two-waits")
def two_waits_flow(event, step):
    first = step.wait_for_event("first", type="tick")
    second = step.wait_for_event("second", type="tick")
    return [first, second]


def test_buffered_events_are_consumed_oldest_first_each_by_one_wait():
    inst = workflows.create("events-test-two-waits")
    inst.send_event("tick", 1)
    inst.send_event("tick", 2)
    inst.send_event("tick", 3)
    run_until_idle()
    assert inst.status()["output"] == [1, 2]
    assert list(Event.objects.filter(consumed_at__isnull=True).values_list("payload", flat=True)) == [3]


def test_one_event_is_consumed_by_one_wait_only():
    inst = workflows.create("events-test-two-waits")
    run_until_idle()
    inst.send_event("tick", "only one")
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    assert Event.objects.get().consumed_by.key == "first#1"
    inst.send_event("tick", "another")
    run_until_idle()
    assert inst.status()["output"] == ["only one", "another"]


def test_send_event_to_a_finished_instance_is_invalid_state():
    inst = workflows.create("events-test-approval")
    inst.send_event("approval", {"approved": True})
    run_until_idle()
    with pytest.raises(workflows.InvalidState, match="complete"):
        inst.send_event("approval", {"approved": False})
    assert Event.objects.count() == 1


def test_send_event_checks_its_type_and_payload(small_payload_limit):
    inst = workflows.create("events-test-approval")
    with pytest.raises(ValueError, match="^event type must be a non-empty string"):
        inst.send_event("", {})
    with pytest.raises(ValueError, match="JSON"):
        inst.send_event("approval", {"when": object()})
    with pytest.raises(ValueError, match="over the limit"):
        inst.send_event("approval", "x" * 2000)
    assert Event.objects.count() == 0


def test_send_event_to_an_unknown_instance_is_instance_not_found():
    with pytest.raises(workflows.InstanceNotFound):
        workflows.Instance("nope").send_event("approval")


def test_events_can_be_sent_to_a_paused_instance_and_are_kept():
    inst = workflows.create("events-test-approval")
    run_until_idle()
    inst.pause()
    inst.send_event("approval", {"approved": True})
    run_until_idle()
    assert inst.status()["status"] == "paused"
    inst.resume()
    run_until_idle()
    assert inst.status()["output"] == {"decision": {"approved": True}}


@workflow("events-test-no-time-to-wait")
def no_time_to_wait_flow(event, step):
    try:
        return step.wait_for_event("approval", type="approval", timeout=0)
    except WaitTimeout as exc:
        return str(exc)


def test_a_wait_with_no_time_left_and_no_event_times_out_without_suspending_the_instance():
    inst = workflows.create("events-test-no-time-to-wait")
    assert run_instance(inst.id) == "complete"
    assert (
        inst.status()["output"] == 'wait "approval" for an event of type "approval" timed out after 0 seconds'
    )
    wait = Step.objects.get(instance_id=inst.id, kind="wait")
    assert (wait.status, wait.completed_at is not None) == ("timed_out", True)


@workflow("events-test-bad-wait-type")
def bad_wait_type_flow(event, step):
    return step.wait_for_event("approval", type="")


def test_a_wait_for_an_event_type_that_is_not_a_name_errors_naming_the_wait():
    inst = workflows.create("events-test-bad-wait-type")
    run_until_idle()
    error = inst.status()["error"]
    assert error["type"] == "ValueError"
    assert error["message"].startswith('wait "approval": event type must be a non-empty string')


def pause_myself(instance_id):
    workflows.get(instance_id).pause()


@workflow("events-test-paused-before-wait")
def paused_before_wait_flow(event, step):
    step.do("pause myself", pause_myself, step.instance_id)
    after_wait = step.wait_for_event("approval", type="approval", timeout="1 hour")
    return {"decision": after_wait}


def test_a_paused_instance_starts_no_wait_until_it_is_resumed():
    inst = workflows.create("events-test-paused-before-wait")
    assert run_instance(inst.id) == "stopped"
    assert not Step.objects.filter(instance_id=inst.id, kind="wait").exists()

    inst.resume()
    run_until_idle()
    inst.send_event("approval", "yes")
    run_until_idle()
    assert inst.status()["output"] == {"decision": "yes"}


@workflow("events-test-wait-later")
def wait_later_flow(event, step):
    step.sleep("first a nap", "1 hour")
    return step.wait_for_event("approval", type="approval", timeout="1 day")


def test_a_wait_takes_only_a_kept_event_of_its_own_instance_and_type():
    inst = workflows.create("events-test-wait-later", id="mine")
    other = workflows.create("events-test-wait-later", id="other")
    run_until_idle()
    other.send_event("approval", "for the other instance")
    inst.send_event("not approval", "another type")

    advance("1 hour")

    assert inst.status()["status"] == "waiting"
    inst.send_event("approval", "mine")
    run_until_idle()
    assert inst.status()["output"] == "mine"
    assert other.status()["output"] == "for the other instance"


def test_an_event_sent_while_several_instances_wait_for_its_type_goes_to_its_own_instance():
    first = workflows.create("events-test-approval", id="first")
    second = workflows.create("events-test-approval", id="second")
    run_until_idle()

    first.send_event("approval", {"approved": True})
    run_until_idle()

    assert first.status()["output"] == {"decision": {"approved": True}}
    assert second.status()["status"] == "waiting"
    wait = Step.objects.get(instance_id="first", kind="wait")
    assert wait.completed_at == Event.objects.get(instance_id="first").consumed_at
