"""step.run_workflow and step.start_workflow: child instances, and what their end does to
the parent."""

from collections import Counter

import pytest

import qcluster_workflows  # noqa: F401 - registers the cluster test workflows here too
import workflows
from support import wait_for
from workflows import StepFailed, workflow
from workflows.models import Instance, Step
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()
broken = {"child": False}


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    broken["child"] = False


@workflow("children-test-child")
def child_flow(event, step):
    calls["child"] += 1
    if (event.payload or {}).get("wait"):
        step.wait_for_event("go", type="go", timeout="1 day")
    if broken["child"]:
        step.do("fail", lambda: (_ for _ in ()).throw(ValueError("the child broke")), retries={"limit": 0})
    return {"doubled": 2 * (event.payload or {}).get("n", 1)}


@workflow("children-test-parent")
def parent_flow(event, step):
    params = event.payload or {}
    calls["parent"] += 1
    try:
        result = step.run_workflow("price order", "children-test-child", params=params, id=params.get("id"))
    except StepFailed as failed:
        return {"failed": [failed.error_type, failed.message]}
    return {"child said": result}


def test_run_workflow_starts_a_child_waits_for_it_without_a_worker_and_returns_its_output():
    parent = workflows.create("children-test-parent", params={"n": 21, "wait": True}, id="order-1")
    run_until_idle()

    child = workflows.get("order-1:price-order")  # the default id: parent id and step name
    assert child.parent_id == "order-1"
    assert workflows.get("order-1").parent_id is None
    assert child.status()["status"] == "waiting"
    row = Instance.objects.get(pk="order-1")
    assert (row.status, row.lease_token, row.wake_at) == ("waiting", "", None)

    child.send_event("go")
    run_until_idle()

    assert parent.status() == {"status": "complete", "output": {"child said": {"doubled": 42}}, "error": None}
    assert calls["child"] == 2  # its own replay after the event
    assert Instance.objects.filter(parent_id="order-1").count() == 1  # started once


def test_a_childs_error_is_the_parents_step_failed_with_its_type_and_message():
    broken["child"] = True
    parent = workflows.create("children-test-parent")
    run_until_idle()
    assert parent.status()["output"] == {"failed": ["ValueError", "the child broke"]}


def test_a_terminated_child_is_the_parents_step_failed():
    parent = workflows.create("children-test-parent", params={"wait": True}, id="order-2")
    run_until_idle()
    workflows.get("order-2:price-order").terminate()
    run_until_idle()
    assert parent.status()["output"] == {
        "failed": ["ChildTerminated", 'child instance "order-2:price-order" was terminated']
    }


@workflow("children-test-fire-and-forget")
def fire_and_forget(event, step):
    first = step.start_workflow("notify", "children-test-child", params={"wait": True})
    second = step.start_workflow("notify", "children-test-child", params={"n": 2}, id="chosen-id")
    step.sleep("a while", "1 hour")
    return [first, second]


def test_start_workflow_returns_the_childs_id_at_once_and_starts_it_once():
    parent = workflows.create("children-test-fire-and-forget", id="batch-7")
    run_until_idle()

    assert Instance.objects.get(pk="batch-7").status == "waiting"  # asleep, not waiting for children
    assert workflows.get("batch-7:notify").status()["status"] == "waiting"
    assert workflows.get("chosen-id").status()["output"] == {"doubled": 4}
    advance("1 hour")
    assert parent.status()["output"] == ["batch-7:notify", "chosen-id"]
    assert Instance.objects.filter(parent_id="batch-7").count() == 2


@workflow("children-test-grandparent")
def grandparent_flow(event, step):
    return step.run_workflow("middle", "children-test-parent", params={"wait": True})


def test_terminating_a_parent_terminates_its_unfinished_children_and_theirs():
    top = workflows.create("children-test-grandparent", id="top")
    run_until_idle()
    assert workflows.get("top:middle:price-order").status()["status"] == "waiting"

    top.terminate()

    statuses = dict(Instance.objects.values_list("id", "status"))
    assert statuses == {
        "top": "terminated",
        "top:middle": "terminated",
        "top:middle:price-order": "terminated",
    }


bad_child_params = {"value": None}


@workflow("children-test-bad-child")
def bad_child_flow(event, step):
    return step.run_workflow(
        "child",
        event.payload.get("workflow", "children-test-child"),
        params=bad_child_params["value"],
        id=event.payload.get("id"),
    )


@pytest.mark.parametrize(
    ("params", "error_type", "message"),
    [
        ({"workflow": "no-such-flow"}, "WorkflowNotFound", 'no workflow named "no-such-flow"'),
        ({"id": "taken"}, "InstanceExists", "instance id(s) already taken: taken"),
        ({"id": "bad id"}, "ValueError", "invalid instance id 'bad id'"),
        ({"params": float("nan")}, "PayloadError", "nan is not a JSON number"),
    ],
)
def test_a_child_that_cannot_be_started_errors_the_parent_and_nothing_is_half_written(
    params, error_type, message
):
    workflows.create("children-test-child", id="taken")
    run_until_idle()
    parent = workflows.create(
        "children-test-bad-child", params={k: v for k, v in params.items() if k != "params"}
    )
    bad_child_params["value"] = params.get("params")
    run_until_idle()

    status = parent.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == error_type
    assert message in status["error"]["message"]
    assert not Step.objects.filter(instance_id=parent.id).exists()
    assert not Instance.objects.filter(parent_id=parent.id).exists()


def test_retry_of_a_parent_whose_child_errored_retries_the_child():
    broken["child"] = True
    parent = workflows.create("children-test-plain-parent", id="p-retry")
    run_until_idle()
    assert parent.status()["status"] == "errored"
    assert workflows.get("p-retry:child").status()["status"] == "errored"

    broken["child"] = False
    parent.retry()
    run_until_idle()

    assert parent.status()["output"] == {"doubled": 2}
    assert Instance.objects.filter(parent_id="p-retry").count() == 1


@workflow("children-test-plain-parent")
def plain_parent(event, step):
    return step.run_workflow("child", "children-test-child")


def test_a_restarted_parent_starts_a_new_child_of_its_own():
    parent = workflows.create("children-test-plain-parent", id="p-restart")
    run_until_idle()
    parent.restart()
    run_until_idle()
    assert sorted(Instance.objects.filter(parent_id="p-restart").values_list("id", flat=True)) == [
        "p-restart:child",
        "p-restart:child:g2",
    ]
    assert parent.status()["output"] == {"doubled": 2}


@workflow("children-test-default-ids")
def default_ids_flow(event, step):
    return [
        step.start_workflow("Send Mail", "children-test-child"),
        step.start_workflow("Send Mail", "children-test-child"),
        step.start_workflow("job #1", "children-test-child"),
    ]


@workflow("children-test-paused-before-child")
def paused_before_child(event, step):
    step.do("pause myself", workflows.get(event.instance_id).pause)
    return step.run_workflow("child", "children-test-child")


def test_a_parent_paused_during_a_step_starts_no_child_until_resumed():
    parent = workflows.create("children-test-paused-before-child")
    run_until_idle()
    assert parent.status()["status"] == "paused"
    assert not Instance.objects.filter(parent_id=parent.id).exists()

    parent.resume()
    run_until_idle()
    assert parent.status()["output"] == {"doubled": 2}


def test_default_child_ids_keep_the_step_name_readable_and_differ_for_a_name_used_again():
    parent = workflows.create("children-test-default-ids", id="p")
    run_until_idle()
    assert parent.status()["output"] == ["p:Send-Mail", "p:Send-Mail-2", "p:job--1"]


@workflow("children-test-long-name")
def long_name_flow(event, step):
    return step.run_workflow("x" * 200, "children-test-child")


def test_a_default_child_id_too_long_to_be_an_id_errors_the_parent_saying_to_pass_one():
    parent = workflows.create("children-test-long-name", id="p-long")
    run_until_idle()
    error = parent.status()["error"]
    assert error["type"] == "ValueError"
    assert error["message"].startswith(f"step \"{'x' * 200}\": the child's default id 'p-long:xxx")
    assert error["message"].endswith("is not a valid instance id (at most 100 characters): pass id=")


@workflow("children-test-catches")
def catches_flow(event, step):
    try:
        return step.run_workflow("price order", "children-test-child", params=event.payload)
    except StepFailed as failed:
        return {"step": failed.step_name, "attempts": failed.attempts, "type": failed.error_type}


def test_a_childs_failure_is_one_failed_attempt_of_the_parents_step_named_for_it():
    broken["child"] = True
    parent = workflows.create("children-test-catches")
    run_until_idle()
    assert parent.status()["output"] == {"step": "price order", "attempts": 1, "type": "ValueError"}


def test_retry_of_a_parent_whose_child_was_terminated_restarts_the_child():
    parent = workflows.create("children-test-plain-parent-waits", id="p-term")
    run_until_idle()
    workflows.get("p-term:child").terminate()
    run_until_idle()
    assert parent.status()["status"] == "errored"

    parent.retry()
    run_until_idle()
    child = workflows.get("p-term:child")
    assert child.status()["status"] == "waiting"
    assert Instance.objects.get(pk="p-term:child").generation == 2
    child.send_event("go")
    run_until_idle()
    assert parent.status()["output"] == {"doubled": 2}


@workflow("children-test-plain-parent-waits")
def plain_parent_waits(event, step):
    return step.run_workflow("child", "children-test-child", params={"wait": True})


def test_a_parent_resumed_while_its_child_runs_goes_back_to_waiting_for_it():
    parent = workflows.create("children-test-plain-parent-waits", id="p-resumed")
    run_until_idle()
    parent.pause()
    parent.resume()
    run_until_idle()

    row = Instance.objects.get(pk="p-resumed")
    assert (row.status, row.lease_token) == ("waiting", "")
    workflows.get("p-resumed:child").send_event("go")
    run_until_idle()
    assert parent.status()["output"] == {"doubled": 2}


@workflow("children-test-two-kinds")
def two_kinds_flow(event, step):
    step.start_workflow("notify", "children-test-child", params={"wait": True, "n": 1})
    return step.run_workflow("price", "children-test-child", params={"wait": True, "n": 5})


def test_a_started_child_that_ends_first_is_not_taken_for_the_child_the_parent_waits_for():
    parent = workflows.create("children-test-two-kinds", id="p-two")
    run_until_idle()

    workflows.get("p-two:notify").send_event("go")
    run_until_idle()
    assert parent.status()["status"] == "waiting"

    workflows.get("p-two:price").send_event("go")
    run_until_idle()
    assert parent.status()["output"] == {"doubled": 10}
    waited = Step.objects.get(instance_id="p-two", name="price")
    assert waited.completed_at == Instance.objects.get(pk="p-two:price").finished_at


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_runs_a_parent_and_its_child(cluster):
    parent = workflows.create("qcluster-test-parent", params={"n": 5}, id="cluster-parent")
    wait_for(lambda: parent.status()["status"] == "complete", cluster, what="the parent")
    assert parent.status()["output"] == {"child": 10}
    assert workflows.get("cluster-parent:child").parent_id == "cluster-parent"


def test_the_console_links_a_parent_and_its_child(admin_client):
    workflows.create("children-test-parent", params={"wait": True}, id="order-9")
    run_until_idle()

    parent_page = admin_client.get("/instances/order-9/").content.decode()
    child_page = admin_client.get("/instances/order-9:price-order/").content.decode()

    assert 'href="/instances/order-9:price-order/"' in parent_page
    assert "waiting for it to finish" in parent_page
    assert 'href="/instances/order-9/"' in child_page
