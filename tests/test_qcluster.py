"""A real `manage.py qcluster` runs workflows: sleeps, events, duplicates and crashes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django_q.tasks import async_task

import qcluster_workflows  # noqa: F401 - registers the workflows in this process too
import workflows
from workflows.models import Instance, Step, StepRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLUSTER_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'tests'); django.setup(); "
    "import qcluster_workflows; "
    "from django.core.management import call_command; call_command('qcluster')"
)


@pytest.fixture
def cluster(tmp_path, test_database_url):
    """A qcluster subprocess on the test database, stopped (whole process group) afterwards."""
    log = open(tmp_path / "cluster.log", "w")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "durable_site.settings",
        "DATABASE_URL": test_database_url,
        "DURABLE_WORKERS": "2",
        "DURABLE_POLL": "0.1",
        "DURABLE_TIMER_INTERVAL": "0.1",
        "DURABLE_LEASE_GRACE_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_SCRIPT],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_path = tmp_path / "cluster.log"
    yield process
    process.send_signal(signal.SIGTERM)  # django-q2 stops its workers gracefully
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    log.close()


def wait_for(condition, cluster, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}; cluster log:\n{cluster.log_path.read_text()[-3000:]}"
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_real_cluster_runs_a_workflow_through_a_sleep_and_an_event(cluster, tmp_path):
    inst = workflows.create("qcluster-test-sleep-and-event", params={"dir": str(tmp_path)})
    for _ in range(3):  # django-q2 may deliver a run more than once: it must not matter
        async_task("workflows.tasks.run_instance", inst.id)

    waiting = wait_for(
        lambda: Instance.objects.filter(pk=inst.id, status="waiting", waiting_for="go").exists(),
        cluster,
        what="the instance to sleep, wake and wait for the event",
    )
    assert waiting
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

    wait_for(lambda: inst.status()["status"] == "complete", cluster, timeout=45, what="recovery")

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
