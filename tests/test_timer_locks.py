"""Timers on PostgreSQL take only rows nobody else holds, so two timers never queue one
instance twice: a row another transaction has locked is skipped, not waited for."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django_q.exceptions import TimeoutException
from django_q.models import OrmQ

import workflows
from support import backend_pid, is_blocked
from workflows import workflow
from workflows.lifecycle import recover_abandoned_runs, wake_due_instances
from workflows.models import Instance
from workflows.tasks import run_instance
from workflows.testing import run_until_idle

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LATER = timedelta(hours=2)  # the timers below look this far ahead: every sleep and lease is due


def killed_by_the_task_timeout() -> None:
    raise TimeoutException("django-q2 stopped the task")  # as when a worker's task is killed


@workflow("timer-locks-test-nap")
def nap(event, step):
    step.sleep("nap", "1 hour")


@workflow("timer-locks-test-killed")
def killed(event, step):
    step.do("step", killed_by_the_task_timeout)


def sleeping_instance() -> str:
    """An instance waiting out a one-hour sleep."""
    inst = workflows.create("timer-locks-test-nap")
    run_until_idle()
    return inst.id


def abandoned_instance() -> str:
    """An instance whose run was killed mid-step: it is running, under a lease nobody renews."""
    inst = workflows.create("timer-locks-test-killed")
    with pytest.raises(TimeoutException):
        run_instance(inst.id)
    return inst.id


TIMERS = [
    pytest.param(sleeping_instance, wake_due_instances, id="wake_due_instances"),
    pytest.param(abandoned_instance, recover_abandoned_runs, id="recover_abandoned_runs"),
]


def queued_runs(instance_id: str) -> int:
    """How many run tasks for the instance wait in django-q2's queue."""
    return sum(task.args() == (instance_id,) for task in OrmQ.objects.all())


def status(instance_id: str) -> str:
    return Instance.objects.get(pk=instance_id).status


def wait_until(condition, what: str, timeout: float = 10.0):
    for _ in range(int(timeout / 0.01)):
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class InThread(threading.Thread):
    """Calls `fn` in a thread, so on its own database connection, in its own transaction;
    `holding` locks are kept until `release()`."""

    def __init__(self, fn, *, holding: bool = False) -> None:
        super().__init__(daemon=True)
        self.fn, self.holding = fn, holding
        self.pid: int | None = None
        self.done = False
        self.error: BaseException | None = None
        self.value = None
        self._ran = threading.Event()
        self._release = threading.Event()

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            with transaction.atomic():
                self.value = self.fn()
                self._ran.set()
                if self.holding:
                    self._release.wait(30)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True
            self._ran.set()
            connection.close()

    def begin(self) -> "InThread":
        self.start()
        wait_until(lambda: self.pid, "the thread's connection")
        return self

    def hold(self) -> "InThread":
        self.start()
        assert self._ran.wait(10), "the thread never took its locks"
        assert self.error is None, self.error
        return self

    def release(self):
        self._release.set()
        self.join(15)
        if self.error is not None:
            raise self.error
        return self.value


def lock_rows(*instance_ids: str) -> InThread:
    """Lock the instances' rows in another transaction (as a run or timer does) until released."""
    return InThread(
        lambda: list(Instance.objects.select_for_update().filter(pk__in=instance_ids)), holding=True
    ).hold()


def lock_the_task_queue() -> InThread:
    """Hold a lock on django-q2's task table that makes every insert into it wait."""

    def lock() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {connection.ops.quote_name(OrmQ._meta.db_table)} IN SHARE MODE")

    return InThread(lock, holding=True).hold()


def failing_fast_on_a_row_lock(fn):
    """Call fn in a transaction that gives up after 1 s waiting for a lock, instead of hanging."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '1s'")
        return fn()


@pytest.mark.parametrize("make_due, timer", TIMERS)
def test_a_timer_skips_a_due_instance_another_transaction_has_locked_and_queues_the_rest(make_due, timer):
    locked, free = make_due(), make_due()
    locked_status = status(locked)
    OrmQ.objects.all().delete()  # forget the runs queued when they were created
    holder = lock_rows(locked)
    try:
        queued = failing_fast_on_a_row_lock(lambda: timer(now=workflows.now() + LATER))
    finally:
        holder.release()

    assert queued == 1
    assert (status(locked), queued_runs(locked)) == (locked_status, 0)
    assert (status(free), queued_runs(free)) == ("queued", 1)


@pytest.mark.parametrize("make_due, timer", TIMERS)
def test_two_timers_ticking_at_once_queue_a_due_instance_exactly_once(make_due, timer):
    due = make_due()
    OrmQ.objects.all().delete()
    now = workflows.now() + LATER
    first, second = InThread(lambda: timer(now=now)), InThread(lambda: timer(now=now))
    queue_lock = lock_the_task_queue()
    try:
        # The first timer takes the instance and stops, its transaction open, at queuing the run.
        first.begin()
        wait_until(lambda: is_blocked(first.pid), "the first timer to reach the queue")
        second.begin()
        wait_until(lambda: second.done or is_blocked(second.pid), "the second timer to finish or wait")
        second_waited = not second.done
    finally:
        queue_lock.release()
        for timer_thread in (first, second):
            if timer_thread.is_alive():
                timer_thread.join(15)

    assert (first.error, second.error) == (None, None)
    assert queued_runs(due) == 1
    assert status(due) == "queued"
    assert (first.value, second.value) == (1, 0)
    assert not second_waited, "the second timer waited for the row the first timer holds"
