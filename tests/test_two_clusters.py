"""Two real qclusters on one database share the work and never run a step twice."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.conf import settings

import two_cluster_workflows  # noqa: F401 - registers the workflow in this process too
import workflows
from workflows.models import Instance, StepRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INSTANCES = 500
STEPS = ("first", "second", "third")
CLUSTER_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'tests'); django.setup(); "
    "import two_cluster_workflows; "
    "from django.core.management import call_command; call_command('qcluster')"
)


@pytest.fixture
def start_clusters(tmp_path, test_database_url):
    """Start qcluster subprocesses on the test database, each in its own process group;
    all are stopped (whole process group) afterwards."""
    processes, log_files = [], []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "durable_site.settings",
        "DATABASE_URL": test_database_url,
        "DURABLE_WORKERS": "2",
        "DURABLE_POLL": "0.1",
        "DURABLE_TIMER_INTERVAL": "0.2",
        "DJANGO_Q_LOG_LEVEL": "INFO",  # to see "Q Cluster ... running." in the log
    }

    def start(count: int) -> list[subprocess.Popen]:
        for number in range(count):
            log_path = tmp_path / f"cluster-{number}.log"
            log_files.append(open(log_path, "w"))
            process = subprocess.Popen(
                [sys.executable, "-c", CLUSTER_SCRIPT],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log_files[-1],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            process.log_path = log_path
            processes.append(process)
        return processes

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)  # django-q2 stops its workers gracefully
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    for log_file in log_files:
        log_file.close()


def logs(clusters) -> str:
    return "\n".join(f"--- {c.log_path.name}\n{c.log_path.read_text()[-2000:]}" for c in clusters)


def wait_for(condition, clusters, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; cluster logs:\n{logs(clusters)}")


def test_two_clusters_run_five_hundred_instances_sharing_the_work_with_no_step_run_twice(
    start_clusters, tmp_path
):
    clusters = start_clusters(2)
    wait_for(
        lambda: all("running." in c.log_path.read_text() for c in clusters),
        clusters,
        timeout=30,
        what="both clusters to start",
    )
    log = tmp_path / "steps.log"
    created = workflows.create_batch(
        "two-clusters-test-three-steps", [{"params": {"log": str(log)}} for _ in range(INSTANCES)]
    )

    wait_for(
        lambda: Instance.objects.filter(status="complete").count() == INSTANCES,
        clusters,
        timeout=120,
        what=f"{INSTANCES} instances to complete",
    )

    assert sorted(Instance.objects.values_list("status", flat=True).distinct()) == ["complete"]
    lines = [line.split() for line in log.read_text().splitlines()]
    runs = Counter((instance_id, step) for instance_id, step, _ in lines)
    assert runs == {(inst.id, step): 1 for inst in created for step in STEPS}
    assert StepRun.objects.count() == INSTANCES * len(STEPS)
    assert set(StepRun.objects.values_list("outcome", flat=True)) == {"succeeded"}
    # Both clusters ran steps: every step names the process group of the cluster it ran in.
    assert {int(cluster) for _, _, cluster in lines} == {c.pid for c in clusters}
