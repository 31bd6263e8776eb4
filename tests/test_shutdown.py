"""A stopping cluster (SIGTERM, a deploy) loses nothing: a delivery not started yet is
handed back to the queue untouched, and a run finishes the step it is in, records it,
then hands its instance back for another cluster to carry on.

tests/test_liveness.py shows the same with a real cluster; here the process plays a
worker of a stopping cluster by setting the flag the broker sets on SIGTERM."""

from collections import Counter

import pytest
from django_q.models import OrmQ

import workflows
from workflows import shutdown, workflow
from workflows.broker import CALL_TASK
from workflows.models import Instance, Step
from workflows.tasks import run_call, run_instance
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


@pytest.fixture
def stopping():
    """Call it to make this process's cluster a stopping one (as the broker does on
    SIGTERM); the flag is cleared afterwards, as a restarted cluster starts without it."""
    yield shutdown.begin_draining
    shutdown._draining.clear()


def queued_runs() -> list[str]:
    return [instance_id for task in OrmQ.objects.order_by("id") for instance_id in task.args()]


def record(label: str) -> str:
    calls[label] += 1
    return label


def stop_the_cluster_meanwhile(begin_draining) -> str:
    begin_draining()  # SIGTERM arrives while this step runs
    return record("first")


@workflow("shutdown-test-two-steps")
def two_steps(event, step):
    step.do("first", record, "first")
    step.do("second", record, "second")
    return "done"


def test_a_delivery_to_a_stopping_worker_is_handed_back_untouched(stopping):
    inst = workflows.create("shutdown-test-two-steps")
    OrmQ.objects.all().delete()
    stopping()

    assert run_instance(inst.id) == "handed back"

    assert calls == {}
    assert Instance.objects.get(pk=inst.id).status == "queued"
    assert queued_runs() == [inst.id]  # for another cluster


@workflow("shutdown-test-one-call")
def one_call(event, step):
    return step.map("record", record, ["call"])


def test_a_parallel_calls_delivery_to_a_stopping_worker_is_handed_back_untouched(stopping):
    inst = workflows.create("shutdown-test-one-call")
    run_instance(inst.id)  # the instance waits for its call
    call = Step.objects.get(instance_id=inst.id, group__isnull=False)
    OrmQ.objects.all().delete()
    stopping()

    assert run_call(call.pk) == "handed back"

    assert calls == {}
    assert Step.objects.get(pk=call.pk).status == "queued"
    assert [(task.func(), task.args()) for task in OrmQ.objects.all()] == [(CALL_TASK, (call.pk,))]


@workflow("shutdown-test-stopped-mid-step")
def stopped_mid_step(event, step):
    step.do("first", stop_the_cluster_meanwhile, shutdown.begin_draining)
    step.do("second", record, "second")
    return "done"


def test_a_run_when_its_cluster_stops_records_the_step_it_is_in_then_hands_the_instance_back(stopping):
    inst = workflows.create("shutdown-test-stopped-mid-step")

    assert run_instance(inst.id) == "stopped"

    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.lease_token) == ("queued", "")
    assert list(Step.objects.filter(instance_id=inst.id).values_list("key", "status")) == [
        ("first#1", "succeeded")
    ]
    shutdown._draining.clear()  # another cluster carries on
    run_until_idle()
    assert inst.status()["output"] == "done"
    assert calls == {"first": 1, "second": 1}
