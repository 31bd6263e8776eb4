"""Liveness with real clusters and the default settings: a dead worker or cluster is
noticed in seconds whatever its step's timeout, a live one is never presumed dead, a
stopping cluster loses nothing, and an event wakes its instance without a poll's delay."""

import signal
import time

import pytest

import qcluster_workflows  # noqa: F401 - registers the workflows in this process too
import workflows
from support import wait_for
from workflows.models import Instance, StepRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def attempts_of(instance_id, key):
    runs = StepRun.objects.filter(step__instance_id=instance_id, step__key=key).order_by("attempt")
    return list(runs.values_list("attempt", "outcome", "error_type"))


def test_a_healthy_step_longer_than_the_lease_runs_once(cluster, tmp_path):
    inst = workflows.create("qcluster-test-long-step", params={"dir": str(tmp_path)})
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="the long step")
    assert len(lines(tmp_path / "long.log")) == 1
    assert attempts_of(inst.id, "long#1") == [(1, "succeeded", "")]


def test_a_whole_cluster_killed_mid_step_is_resumed_by_a_new_cluster_within_seconds(clusters, tmp_path):
    first = clusters.start()
    inst = workflows.create("qcluster-test-crash", params={"dir": str(tmp_path)})
    wait_for((tmp_path / "slow.pid").exists, first, what="the slow step to start")
    clusters.kill(first)

    second = clusters.start()
    started = time.monotonic()
    wait_for(lambda: inst.status()["status"] == "complete", second, timeout=30, what="recovery")
    # Cluster start-up (about a second) plus what is left of the dead run's 1.5 s lease.
    assert time.monotonic() - started < 6
    assert lines(tmp_path / "first.log") == ["first"]
    assert attempts_of(inst.id, "slow#1") == [(1, "failed", "AttemptAbandoned"), (2, "succeeded", "")]


def test_sigterm_during_a_step_finishes_and_records_it_then_hands_the_instance_back(clusters, tmp_path):
    first = clusters.start()
    inst = workflows.create("qcluster-test-three-slow-steps", params={"dir": str(tmp_path)})
    wait_for((tmp_path / "one.log").exists, first, what="the first step to start")
    first.send_signal(signal.SIGTERM)
    first.wait(20)

    # The running step finished and was recorded; the next one was left to another cluster.
    assert attempts_of(inst.id, "one#1") == [(1, "succeeded", "")]
    assert not (tmp_path / "two.log").exists()
    assert Instance.objects.get(pk=inst.id).status == "queued"

    second = clusters.start()
    wait_for(lambda: inst.status()["status"] == "complete", second, what="the rest of the steps")
    assert inst.status()["output"] == ["one", "two", "three"]
    assert [len(lines(tmp_path / f"{label}.log")) for label in ("one", "two", "three")] == [1, 1, 1]
    first_pid = {line.split()[1] for line in lines(tmp_path / "one.log")}
    assert first_pid.isdisjoint(line.split()[1] for line in lines(tmp_path / "two.log"))


@pytest.mark.postgres
def test_an_event_wakes_its_instance_without_waiting_for_a_poll(clusters, tmp_path):
    # A 5 s poll: a wake-up within a fraction of it can only come from NOTIFY.
    cluster = clusters.start(DURABLE_POLL="5")
    inst = workflows.create("qcluster-test-event", params={"dir": str(tmp_path)})
    wait_for(
        lambda: Instance.objects.filter(pk=inst.id, status="waiting", waiting_for="go").exists(),
        cluster,
        what="the instance to wait for its event",
    )
    time.sleep(0.5)  # the pusher is idle, waiting out its poll
    sent = time.monotonic()
    inst.send_event("go", {"n": 1})
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="the event's wake-up")
    assert time.monotonic() - sent < 1
    assert inst.status()["output"] == {"n": 1}
