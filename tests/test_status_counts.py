"""The workflows page's counts by status (counts.py): the instances that ended long enough
ago are added up once by the timers, the others counted live, and the counts always equal
a count of the rows as they are now, through retries, restarts, deletes and retention."""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction

import workflows
from support import backend_pid, is_blocked
from workflows import NonRetryableError, clock, counts, retention, selectors, workflow
from workflows.models import FinishedCount, Instance
from workflows.rollups import GRACE
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

FIXED: set[str] = set()  # instances whose step no longer fails


def charge(instance_id: str) -> str:
    if instance_id not in FIXED:
        raise NonRetryableError("the card was declined")
    return "charged"


@workflow("counts-test-charge")
def charge_flow(event, step):
    return step.do("charge", charge, event.instance_id)


@workflow("counts-test-waits")
def waiting_flow(event, step):
    step.wait_for_event("approval", type="approval")


@pytest.fixture(autouse=True)
def _every_charge_declined():
    FIXED.clear()


def rows_now() -> Counter:
    """What a count of the instance rows says: the truth the counts must equal."""
    return Counter(Instance.objects.values_list("workflow", "status"))


def counted() -> Counter:
    return Counter(
        {(workflow, status): number for workflow, status, number in counts.by_workflow_and_status()}
    )


def settle_everything() -> int:
    """A settle once every instance that has ended did so more than GRACE ago."""
    clock.shift(GRACE + timedelta(minutes=1))
    return counts.settle(now=clock.now())


def ended(*, charged: int = 0, declined: int = 0) -> list[workflows.Instance]:
    instances = []
    for n in range(charged + declined):
        inst = workflows.create("counts-test-charge")
        if n < charged:
            FIXED.add(inst.id)
        instances.append(inst)
    run_until_idle()
    return instances


def test_counts_before_any_settle_are_the_rows_counted_live():
    ended(charged=2, declined=1)
    workflows.create("counts-test-waits")
    run_until_idle()
    assert (
        counted()
        == rows_now()
        == Counter(
            {
                ("counts-test-charge", "complete"): 2,
                ("counts-test-charge", "errored"): 1,
                ("counts-test-waits", "waiting"): 1,
            }
        )
    )
    assert not FinishedCount.objects.exists()


def test_settled_instances_are_added_up_once_and_those_that_end_later_are_counted_live():
    ended(charged=2, declined=1)
    assert settle_everything() == 3
    assert counted() == rows_now()
    assert settle_everything() == 0  # twice: nothing more is added
    workflows.create("counts-test-charge", id="later")
    FIXED.add("later")
    run_until_idle()
    assert counted() == rows_now()
    assert counted()["counts-test-charge", "complete"] == 3
    assert sum(row.number for row in FinishedCount.objects.all()) == 3


def test_only_what_ended_more_than_the_grace_ago_is_settled():
    ended(charged=1)
    assert counts.settle(now=clock.now()) == 0  # it ended just now: its transaction may not have committed
    clock.shift(GRACE + timedelta(seconds=1))
    assert counts.settle(now=clock.now()) == 1
    assert counted() == rows_now()


def test_a_late_settle_adds_up_everything_since_the_last_one():
    ended(charged=1)
    settle_everything()
    clock.shift(timedelta(hours=5))
    ended(declined=1)
    clock.shift(timedelta(hours=5))
    assert settle_everything() == 1
    assert counted() == rows_now()


def test_a_settled_errored_instance_retried_leaves_the_errored_count():
    [inst] = ended(declined=1)
    settle_everything()
    FIXED.add(inst.id)
    inst.retry()
    assert counted() == rows_now()
    assert counted()["counts-test-charge", "errored"] == 0
    assert counted()["counts-test-charge", "queued"] == 1
    run_until_idle()
    assert counted() == rows_now() == Counter({("counts-test-charge", "complete"): 1})


def test_a_settled_instance_restarted_leaves_its_finished_count():
    [inst] = ended(charged=1)
    settle_everything()
    inst.restart()
    assert counted() == rows_now() == Counter({("counts-test-charge", "queued"): 1})
    run_until_idle()
    settle_everything()
    assert counted() == rows_now() == Counter({("counts-test-charge", "complete"): 1})


def test_an_instance_retried_before_it_was_settled_is_not_taken_off():
    [inst] = ended(declined=1)
    FIXED.add(inst.id)
    inst.retry()
    settle_everything()
    run_until_idle()
    assert counted() == rows_now() == Counter({("counts-test-charge", "complete"): 1})


def test_deleted_instances_leave_the_counts_settled_or_not():
    settled_one, _ = ended(charged=2)
    settle_everything()
    settled_one.delete()
    assert counted() == rows_now() == Counter({("counts-test-charge", "complete"): 1})
    workflows.create("counts-test-charge", id="fresh")
    run_until_idle()
    workflows.get("fresh").delete()  # ended after the mark: counted live, so nothing to take off
    assert counted() == rows_now()


def test_the_retentions_purge_takes_what_it_deletes_off_the_counts():
    ended(charged=3, declined=2)
    settle_everything()
    clock.shift(timedelta(days=31))
    ended(charged=1)  # not past its retention
    assert retention.purge_expired(now=clock.now()) == 5
    assert counted() == rows_now() == Counter({("counts-test-charge", "complete"): 1})


def test_the_workflows_page_lists_every_registered_workflow_and_any_with_instances_left():
    Instance.objects.create(
        id="old", workflow="counts-test-removed", status="complete", created_at=clock.now(),
        updated_at=clock.now(), finished_at=clock.now() - timedelta(hours=1),
    )  # fmt: skip
    settle_everything()
    stats = {row.name: row for row in selectors.workflow_stats()}
    assert stats["counts-test-removed"].counts["complete"] == 1
    assert stats["counts-test-waits"].total == 0  # registered, no instance yet
    workflows.get("old").delete()
    assert "counts-test-removed" not in {row.name for row in selectors.workflow_stats()}


# --- on PostgreSQL, a settle and a retry or delete at the same moment ----------------------


def in_thread(target) -> tuple[threading.Thread, dict]:
    """Run `target` in a thread with its own connection; the dict gets its backend pid."""
    seen: dict = {}

    def run() -> None:
        seen["pid"] = backend_pid()
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, seen


def wait_until_blocked(seen: dict) -> None:
    deadline = time.monotonic() + 10
    while not (seen.get("pid") and is_blocked(seen["pid"])):
        assert time.monotonic() < deadline, "the other transaction never waited"
        time.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_settle_waits_for_a_retry_that_holds_the_mark_and_then_counts_right():
    counts.settle(now=clock.now())  # the mark exists (its first settle is no different)
    [inst] = ended(declined=1)
    FIXED.add(inst.id)
    retried = threading.Event()
    go_on = threading.Event()

    def retry_and_hold() -> None:
        with transaction.atomic():
            inst.retry()  # takes the instance off nothing yet: it has not been settled
            retried.set()
            go_on.wait(10)

    retrying, _ = in_thread(retry_and_hold)
    assert retried.wait(10)
    settling, seen = in_thread(settle_everything)
    wait_until_blocked(seen)
    go_on.set()
    retrying.join(10)
    settling.join(10)
    assert counted() == rows_now() == Counter({("counts-test-charge", "queued"): 1})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["retry", "delete"])
def test_a_retry_or_delete_during_a_settle_waits_and_takes_off_what_the_settle_added(change):
    counts.settle(now=clock.now())
    [inst] = ended(declined=1)
    FIXED.add(inst.id)
    settled = threading.Event()
    go_on = threading.Event()

    def settle_and_hold() -> None:
        with transaction.atomic():  # the settle's lock on the mark is held until this commits
            settle_everything()
            settled.set()
            go_on.wait(10)

    settling, _ = in_thread(settle_and_hold)
    assert settled.wait(10)
    changing, seen = in_thread(getattr(inst, change))
    wait_until_blocked(seen)
    go_on.set()
    settling.join(10)
    changing.join(10)
    assert counted() == rows_now()
    assert counted()["counts-test-charge", "errored"] == 0
