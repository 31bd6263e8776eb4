"""A real `manage.py qcluster` runs workflows: sleeps, events, duplicates and crashes."""

import os
import signal
import time
from pathlib import Path

import pytest
from django_q.tasks import async_task

import qcluster_workflows  # noqa: F401 - registers the workflows in this process too
import workflows
from support import wait_for
from workflows.models import Instance, Step, StepRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_real_cluster_runs_a_workflow_through_a_sleep_and_an_event(cluster, tmp_path):
    inst = workflows.create("qcluster-test-sleep-and-event", params={"dir": str(tmp_path)})
    for _ in range(3):  # django-q2 may deliver a run more than once: it must not matter
        async_task("workflows.tasks.run_instance", inst.id)

    wait_for(
        lambda: Instance.objects.filter(pk=inst.id, status="waiting", waiting_for="go").exists(),
        cluster,
        what="the instance to sleep, wake and wait for the event",
    )
    # Waiting for the event: no run holds it and it wakes at the wait's deadline.
    row = Instance.objects.get(pk=inst.id)
    go = Step.objects.get(instance_id=inst.id, key="go#1")
    assert (row.status, row.waiting_for, row.lease_token, row.lease_expires_at) == ("waiting", "go", "", None)
    assert (go.status, row.wake_at) == ("waiting", go.wake_at)
    nap = Step.objects.get(instance_id=inst.id, key="nap#1")
    assert nap.status == "succeeded"
    assert (nap.completed_at - nap.wake_at).total_seconds() < 1.5, "woke too late"

    inst.send_event("go", {"approved": True})
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="completion")

    assert inst.status()["output"] == {"decision": {"approved": True}}
    assert lines(tmp_path / "before.log") == ["before"]
    assert lines(tmp_path / "after.log") == ["after"]


def test_a_worker_killed_mid_step_is_recovered_without_rerunning_completed_steps(cluster, tmp_path):
    inst = workflows.create("qcluster-test-crash", params={"dir": str(tmp_path)})
    pid_file = tmp_path / "slow.pid"
    wait_for(pid_file.exists, cluster, what="the slow step to start")
    time.sleep(0.2)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    killed = time.monotonic()

    wait_for(lambda: inst.status()["status"] == "complete", cluster, timeout=30, what="recovery")
    # The lease (1.5 s, renewed by the worker's heartbeat) runs out, not the step's timeout.
    assert time.monotonic() - killed < 5

    assert inst.status()["output"] == "survived"
    assert lines(tmp_path / "first.log") == ["first"]
    assert lines(tmp_path / "third.log") == ["third"]
    attempts = StepRun.objects.filter(step__instance_id=inst.id, step__key="slow#1").order_by("attempt")
    assert list(attempts.values_list("attempt", "outcome", "error_type")) == [
        (1, "failed", "AttemptAbandoned"),
        (2, "succeeded", ""),
    ]


def test_a_step_timeout_interrupts_the_attempt_inside_a_worker(cluster):
    inst = workflows.create("qcluster-test-timeout")
    started = time.monotonic()
    wait_for(lambda: inst.status()["status"] == "errored", cluster, what="the timed-out step to fail")
    assert time.monotonic() - started < 10
    assert inst.status()["error"]["type"] == "StepTimeout"
    # The worker survived its interrupted attempts and still runs work.
    again = workflows.create("qcluster-test-timeout")
    wait_for(lambda: again.status()["status"] == "errored", cluster, what="a second instance")


def test_system_exit_in_a_step_fails_the_attempt_and_the_worker_lives_on(cluster, tmp_path):
    inst = workflows.create("qcluster-test-system-exit", params={"dir": str(tmp_path)})
    wait_for(lambda: inst.status()["status"] == "errored", cluster, what="the exiting step to fail")

    assert inst.status()["error"] == {"type": "SystemExit", "message": "a library called sys.exit()"}
    attempts = StepRun.objects.filter(step__instance_id=inst.id).order_by("attempt")
    assert list(attempts.values_list("outcome", "error_type")) == [("failed", "SystemExit")] * 2
    assert len(lines(tmp_path / "exit.log")) == 2
    assert "reincarnated worker" not in cluster.log_path.read_text()
