"""The timer: one look (`tick`) queues the waiting instances that are due and takes back
the runs whose lease ran out; between looks it sleeps until the earliest sleeper is due,
or DURABLE_TIMER_INTERVAL. Every run the engine queues is a django-q2 task naming its
instance."""

import logging
import random
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django_q.exceptions import TimeoutException
from django_q.models import OrmQ

import workflows
from support import ProcessEnds, sleeps_until_the_third, threads_started
from workflows import clock, workflow
from workflows.broker import RUN_TASK
from workflows.conf import setting
from workflows.lifecycle import seconds_until_next_wake
from workflows.models import Instance, Step
from workflows.tasks import run_instance
from workflows.testing import run_until_idle
from workflows.timers import tick

pytestmark = pytest.mark.django_db

killed: set[str] = set()


@pytest.fixture(autouse=True)
def _reset():
    killed.clear()


def status_of(inst) -> str:
    return Instance.objects.get(pk=inst.id).status


def time_passes(duration: timedelta) -> None:
    """The engine's clock moves on with no timer looking (advance would also run them)."""
    clock.shift(duration)


def take_queued_runs() -> list[str]:
    """The instances of the run tasks waiting in django-q2's queue, oldest first; taken."""
    tasks = list(OrmQ.objects.order_by("id"))
    OrmQ.objects.all().delete()
    assert {task.func() for task in tasks} <= {RUN_TASK}
    return [instance_id for task in tasks for instance_id in task.args()]


@workflow("timers-test-nap")
def nap(event, step):
    step.sleep("nap", event.payload or "1 minute")
    return "rested"


def killed_the_first_time(instance_id: str) -> str:
    if instance_id not in killed:
        killed.add(instance_id)
        raise TimeoutException("django-q2 killed the task")  # as when a worker dies mid-step
    return "done"


@workflow("timers-test-killed-step")
def killed_step(event, step):
    return step.do("step", killed_the_first_time, step.instance_id, timeout="1 minute")


@workflow("timers-test-wait")
def wait(event, step):
    return step.wait_for_event("go", type="go")


@workflow("timers-test-call")
def one_call(event, step):
    return step.map("call", str, [1])


def abandoned_instance():
    inst = workflows.create("timers-test-killed-step")
    with pytest.raises(TimeoutException):
        run_instance(inst.id)
    return inst


def test_one_look_queues_the_due_sleepers_and_takes_back_the_abandoned_runs_and_says_how_many(caplog):
    due = workflows.create("timers-test-nap")
    not_due = workflows.create("timers-test-nap", params="1 hour")
    run_until_idle()
    abandoned = abandoned_instance()  # its lease: the step's minute and the grace
    assert tick() == 0

    time_passes(timedelta(minutes=1, seconds=setting("LEASE_GRACE_SECONDS") + 1))
    with caplog.at_level(logging.WARNING, logger="workflows"):
        assert tick() == 2

    assert [status_of(inst) for inst in (due, not_due, abandoned)] == ["queued", "waiting", "queued"]
    assert f"recovering instance {abandoned.id}: its run stopped without finishing" in caplog.messages
    assert tick() == 0
    run_until_idle()
    assert [inst.status()["status"] for inst in (due, not_due, abandoned)] == [
        "complete",
        "waiting",
        "complete",
    ]


def test_the_timer_leaves_a_paused_instance_whose_sleep_is_due_paused_until_resume():
    inst = workflows.create("timers-test-nap")
    run_until_idle()
    inst.pause()

    time_passes(timedelta(hours=1))
    assert tick() == 0
    assert status_of(inst) == "paused"

    inst.resume()
    run_until_idle()
    assert inst.status()["output"] == "rested"


def test_between_looks_the_timer_sleeps_until_the_earliest_sleeper_is_due():
    assert seconds_until_next_wake(now=workflows.now()) is None  # nobody waits

    workflows.create("timers-test-nap", params="1 hour")
    workflows.create("timers-test-nap", params="10 minutes")
    workflows.create("timers-test-nap", params="2 hours")
    run_until_idle()

    assert 599 < seconds_until_next_wake(now=workflows.now()) <= 600
    time_passes(timedelta(minutes=11))
    assert -61 < seconds_until_next_wake(now=workflows.now()) <= -59  # overdue: look at once


def test_a_paused_sleeper_does_not_bring_the_timers_next_look_forward():
    soon = workflows.create("timers-test-nap", params="1 minute")
    workflows.create("timers-test-nap", params="1 hour")
    run_until_idle()
    soon.pause()

    assert 3599 < seconds_until_next_wake(now=workflows.now()) <= 3600


def test_every_run_the_engine_queues_for_a_worker_is_a_task_naming_its_instance():
    sleeper = workflows.create("timers-test-nap")
    waiter = workflows.create("timers-test-wait")
    assert take_queued_runs() == [sleeper.id, waiter.id]
    run_until_idle()
    assert take_queued_runs() == []

    waiter.send_event("go", "now")
    assert take_queued_runs() == [waiter.id]

    waiter.pause()
    waiter.resume()
    assert take_queued_runs() == [waiter.id]

    abandoned = abandoned_instance()
    take_queued_runs()
    time_passes(timedelta(hours=1))
    tick()
    assert sorted(take_queued_runs()) == sorted([sleeper.id, abandoned.id])


def test_an_instance_waiting_with_no_deadline_does_not_upset_the_timers_next_look():
    """A parent waiting for its children (or its parallel calls) has no wake_at: the
    timer's look for the next due sleeper must skip it, on both databases (NULLs sort
    first on SQLite, last on PostgreSQL)."""
    Instance.objects.create(
        id="waits-for-children",
        workflow="timers-test-nap",
        status="waiting",
        created_at=workflows.now(),
        updated_at=workflows.now(),
    )
    assert seconds_until_next_wake(now=workflows.now()) is None
    workflows.create("timers-test-nap", params="10 minutes")
    run_until_idle()
    assert 599 < seconds_until_next_wake(now=workflows.now()) <= 600


# --- the timer thread's looks --------------------------------------------------------------


def test_a_look_with_nobody_due_sleeps_a_whole_interval():
    from workflows.timers import Timer

    assert Timer().look() == setting("TIMER_INTERVAL")


def test_a_look_sleeps_only_until_the_next_sleeper_is_due_and_never_zero_when_overdue(monkeypatch):
    from workflows import lifecycle, timers

    workflows.create("timers-test-nap", params="1 minute")
    run_until_idle()
    monkeypatch.setattr(timers, "seconds_until_next_wake", lambda now, ahead: 0.05)
    assert timers.Timer().look() == 0.05
    monkeypatch.setattr(timers, "seconds_until_next_wake", lambda now, ahead: -3.0)  # overdue
    assert timers.Timer().look() == 0.002
    monkeypatch.setattr(timers, "seconds_until_next_wake", lambda now, ahead: 60.0)
    assert timers.Timer().look() == setting("TIMER_INTERVAL")
    assert lifecycle.seconds_until_next_wake(now=workflows.now()) > 59


def test_a_look_that_wakes_a_full_batch_looks_again_at_once(monkeypatch):
    """BATCH is 3 here so that a full batch is cheap to build."""
    from workflows import lifecycle, timers

    monkeypatch.setattr(lifecycle, "BATCH", 3)
    monkeypatch.setattr(timers, "BATCH", 3)
    for _ in range(4):
        workflows.create("timers-test-nap", params="1 minute")
    run_until_idle()
    take_queued_runs()  # the runs of their creation
    time_passes(timedelta(minutes=2))

    timer = timers.Timer()
    assert timer.look() == 0.0  # three woken: there may be more
    assert timer.look() == setting("TIMER_INTERVAL")  # the fourth, then nobody due
    assert len(take_queued_runs()) == 4


def test_a_look_that_fails_logs_it_and_waits_a_second(monkeypatch, caplog):
    from workflows import timers

    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(timers, "start_due", broken)
    with caplog.at_level(logging.ERROR, logger="workflows.timers"):
        assert timers.Timer().look() == 1.0
    assert caplog.messages == ["durable timer tick failed; retrying"]


def test_a_timer_deletes_expired_instances_when_its_retention_look_is_due_then_a_minute_later(monkeypatch):
    from workflows import retention, timers

    purges = []
    monkeypatch.setattr(retention, "purge_expired", lambda: purges.append(1) or 0)
    timer = timers.Timer()
    assert 1 <= timer.next_retention_look - time.monotonic() <= 5  # soon, spread out
    timer.look()
    assert purges == []  # not yet due

    timer.next_retention_look = 0
    timer.look()
    assert purges == [1]
    assert timer.next_retention_look - time.monotonic() > timers.RETENTION_LOOK_SECONDS - 1
    timer.look()
    assert purges == [1]  # a minute until the next


def test_a_timer_whose_retention_look_deleted_a_full_batch_looks_again_next_time(monkeypatch):
    from workflows import retention, timers

    purges = []
    monkeypatch.setattr(retention, "purge_expired", lambda: purges.append(1) or retention.BATCH)
    timer = timers.Timer()
    timer.next_retention_look = 0
    timer.look()
    timer.look()
    assert purges == [1, 1]


def test_a_look_sleeps_only_until_a_sleeper_due_before_its_next_look():
    from workflows.timers import Timer

    inst = workflows.create("timers-test-nap", params="1 minute")
    run_until_idle()
    time_passes(Instance.objects.get(pk=inst.id).wake_at - clock.now() - timedelta(seconds=0.1))

    assert 0 < Timer().look() <= 0.1  # its last tenth of a second, not a whole interval


def test_a_look_counts_an_instance_it_queued_because_a_parallel_calls_worker_died():
    from workflows.calls import _claim

    inst = workflows.create("timers-test-call")
    run_instance(inst.id)  # it waits for its call
    OrmQ.objects.all().delete()  # the tasks of its creation and of its call
    _claim(Step.objects.get(instance_id=inst.id, group__isnull=False).pk, clock.now())  # then its worker dies

    time_passes(timedelta(seconds=setting("LEASE_GRACE_SECONDS") + 1))
    assert tick() == 1
    assert take_queued_runs() == [inst.id]


class Always(random.Random):
    """A random source that always draws `at`: 0.0 the low end of any range, 1.0 its high end."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def random(self) -> float:
        return self.at


@pytest.mark.parametrize(("at", "seconds"), [(0.0, 1), (1.0, 5)])
def test_a_timers_first_retention_and_rollup_looks_come_one_to_five_seconds_after_it_starts(
    monkeypatch, at, seconds
):
    from workflows import timers

    monkeypatch.setattr(timers, "random", Always(at))
    timer = timers.Timer()
    assert seconds - 0.1 < timer.next_retention_look - time.monotonic() <= seconds
    assert seconds - 0.1 < timer.next_rollup_look - time.monotonic() <= seconds


def test_a_retention_look_is_made_at_the_moment_it_falls_due(monkeypatch):
    from workflows import retention, timers

    purges = []
    monkeypatch.setattr(retention, "purge_expired", lambda: purges.append(1) or 0)
    monkeypatch.setattr(timers, "time", SimpleNamespace(monotonic=lambda: 100.0))
    timer = timers.Timer()
    timer.next_retention_look = 100.0
    timer.look()
    assert purges == [1]


def test_the_timers_of_a_clusters_workers_take_turns_so_the_cluster_looks_about_every_interval():
    from workflows import timers

    pauses = [timers.Timer(spread=4).look() for _ in range(50)]
    interval = setting("TIMER_INTERVAL")
    assert all(4 * interval * 0.5 <= pause <= 4 * interval * 1.5 for pause in pauses)
    assert len(set(pauses)) > 1  # at random points, so that they do not look all at once
    assert timers.Timer(spread=0).look() == interval  # a process that is not a worker looks alone


def test_a_timer_rolls_up_the_workflows_pages_figures_when_its_rollup_look_is_due_then_a_minute_later():
    from workflows import timers
    from workflows.models import FinishedCount, RollupMark, WorkflowHour

    inst = workflows.create("timers-test-nap", params="1 second")
    run_until_idle()
    clock.shift(timedelta(hours=1))
    run_until_idle()
    assert status_of(inst) == "complete"
    clock.shift(timedelta(hours=2))
    timer = timers.Timer()
    assert 1 <= timer.next_rollup_look - time.monotonic() <= 5  # soon, spread out
    timer.look()
    assert not RollupMark.objects.exists()  # not yet due

    timer.next_rollup_look = 0
    timer.look()
    assert sum(WorkflowHour.objects.values_list("started", flat=True)) == 1  # its hours are kept
    assert FinishedCount.objects.get().number == 1  # it is added up
    assert timer.next_rollup_look - time.monotonic() > timers.ROLLUP_LOOK_SECONDS - 1


@pytest.mark.parametrize(("at", "turn"), [(0.0, 0.5), (1.0, 1.5)])
def test_even_the_timers_of_two_workers_look_at_random_points_of_their_turn(monkeypatch, at, turn):
    from workflows import timers

    monkeypatch.setattr(timers, "random", Always(at))
    assert timers.Timer(spread=2).look() == pytest.approx(2 * setting("TIMER_INTERVAL") * turn)


# --- the timer thread ----------------------------------------------------------------------


def test_a_worker_starts_one_timer_thread_which_does_not_keep_the_process_alive(monkeypatch):
    from workflows import timers

    started = threads_started(
        monkeypatch,
        timers,
        flag="_started",
        loop="_run_forever",
        start=timers.start_timer_thread,
        name="durable-timer",
    )
    assert started == [("durable-timer", True)]  # once per process


@pytest.mark.parametrize(("workers", "spread"), [(4, 4), (0, 1)])
def test_the_timer_thread_looks_again_after_each_pause_taking_turns_with_the_clusters_workers(
    monkeypatch, workers, spread
):
    from django_q.conf import Conf

    from workflows import timers

    timers_made, slept = [], []

    class Looks(timers.Timer):
        def __init__(self, spread: int) -> None:
            super().__init__(spread)
            timers_made.append(self)

        def look(self) -> float:
            return [0.2, 0.05, 0.0][len(slept)]

    monkeypatch.setattr(Conf, "WORKERS", workers)
    monkeypatch.setattr(timers, "Timer", Looks)
    monkeypatch.setattr(timers, "time", sleeps_until_the_third(slept, monotonic=time.monotonic))
    with pytest.raises(ProcessEnds):
        timers._run_forever()
    assert [timer.spread for timer in timers_made] == [spread]
    assert slept == [0.2, 0.05, 0.0]
