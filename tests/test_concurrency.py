"""One executor per instance, and each step's success recorded exactly once."""

import threading
from collections import Counter

import pytest
from django.db import connection

import workflows
from workflows import workflow
from workflows.models import Instance, Step, StepRun
from workflows.runtime import run_instance
from workflows.timers import recover_abandoned_runs

pytestmark = pytest.mark.django_db(transaction=True)

calls: Counter[str] = Counter()
release = threading.Event()
started = threading.Event()


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    release.clear()
    started.clear()


def slow_once(label):
    """The first call blocks until the test releases it; later calls return at once."""
    calls[label] += 1
    if calls[label] == 1:
        started.set()
        assert release.wait(10), "test never released the step"
    return f"{label} call {calls[label]}"


@workflow("concurrency-test-slow")
def slow_flow(event, step):
    # The default retry policy (10 s delay): an abandoned attempt is retried at once.
    return step.do("slow", slow_once, "slow")


def in_thread(fn, *args):
    """Run fn in a thread with its own database connection; return a getter for its result."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()

    def result():
        thread.join(15)
        return outcome.get("value")

    return result


def test_a_run_task_delivered_twice_runs_the_step_once():
    inst = workflows.create("concurrency-test-slow")
    first = in_thread(run_instance, inst.id)
    assert started.wait(10)

    assert run_instance(inst.id) == "skipped"  # the duplicate delivery, while the first runs
    release.set()

    assert first() == "complete"
    assert run_instance(inst.id) == "skipped"  # a late duplicate, after it finished
    assert calls == {"slow": 1}
    assert inst.status()["output"] == "slow call 1"


def test_a_run_presumed_dead_cannot_record_its_result_after_another_took_over():
    inst = workflows.create("concurrency-test-slow")
    stale = in_thread(run_instance, inst.id)
    assert started.wait(10)

    # The first run looks dead: its lease expires and the timer recovers the instance.
    from django.utils import timezone

    Instance.objects.filter(pk=inst.id).update(lease_expires_at=timezone.now())
    assert recover_abandoned_runs() == 1
    assert run_instance(inst.id) == "complete"  # the second run retries the step
    release.set()

    assert stale() == "stopped"
    assert calls == {"slow": 2}
    assert inst.status()["output"] == "slow call 2"
    step = Step.objects.get(instance_id=inst.id)
    assert (step.status, step.result) == ("succeeded", "slow call 2")
    runs = list(StepRun.objects.filter(step=step).values_list("attempt", "outcome", "error_type"))
    assert runs == [(1, "failed", "AttemptAbandoned"), (2, "succeeded", "")]


@pytest.mark.postgres
def test_concurrent_claims_on_postgresql_let_exactly_one_run_execute():
    inst = workflows.create("concurrency-test-slow")
    barrier = threading.Barrier(4)

    def claim():
        barrier.wait(5)
        return run_instance(inst.id)

    results = [in_thread(claim) for _ in range(4)]
    assert started.wait(10)
    release.set()
    outcomes = Counter(result() for result in results)
    assert outcomes == {"complete": 1, "skipped": 3}
    assert calls == {"slow": 1}
