"""Which of a run's commits wait for the disk.

Only what a replay cannot make again must be durable at once: the end of an attempt (a
result computed by user code) and the end of the instance. The other writes of a run (a
step started, a patch marked, a child started, a sleep, a wait, a group of parallel calls,
a suspension) commit without waiting for the disk on PostgreSQL (synchronous_commit off
for the transaction): a database crash loses at most what the replay after recovery
writes again. Here the engine's switch for that is counted, on both databases (on SQLite
it does nothing).
"""

import pytest

import workflows
from workflows import attempt_sql, runtime, workflow
from workflows.calls import claimable_calls
from workflows.runtime import run_instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def commits_without_disk_wait(monkeypatch) -> list[str]:
    """The run's commits that do not wait for the disk, one entry each."""
    commits: list[str] = []
    switch = runtime._commit_without_waiting_for_disk

    def counted() -> None:
        commits.append("fast")
        switch()

    monkeypatch.setattr(runtime, "_commit_without_waiting_for_disk", counted)
    # The general path on both databases: on PostgreSQL an attempt's start and end are one
    # statement each when they can be (attempt_sql.py), which commits on its own.
    monkeypatch.setattr(attempt_sql, "applies", lambda: False)
    return commits


def fail_always() -> None:
    raise ConnectionError("down")


@workflow("commits-test-step")
def one_step(event, step):
    return step.do("one", lambda: 1)


@workflow("commits-test-patch")
def patch_only(event, step):
    return step.patched("new pricing")


@workflow("commits-test-sleep")
def sleep_only(event, step):
    step.sleep("nap", "1 hour")


@workflow("commits-test-wait")
def wait_only(event, step):
    return step.wait_for_event("go", type="go")


@workflow("commits-test-start-child")
def start_child(event, step):
    return step.start_workflow("child", "commits-test-step")


@workflow("commits-test-run-child")
def run_child(event, step):
    return step.run_workflow("child", "commits-test-step")


@workflow("commits-test-map")
def map_only(event, step):
    return step.map("double", lambda n: 2 * n, [1, 2])


@workflow("commits-test-retry-later")
def retry_later(event, step):
    return step.do("flaky", fail_always, retries={"limit": 1, "delay": "1 minute"})


@pytest.mark.parametrize(
    ("name", "fast"),
    [
        # The attempt's start; its end and the instance's end wait for the disk.
        pytest.param("commits-test-step", 1, id="a step"),
        pytest.param("commits-test-patch", 1, id="a patch marked"),
        pytest.param("commits-test-sleep", 1, id="a sleep"),
        pytest.param("commits-test-wait", 1, id="a wait"),
        pytest.param("commits-test-start-child", 1, id="a child started"),
        pytest.param("commits-test-run-child", 1, id="a child run and waited for"),
        pytest.param("commits-test-map", 1, id="a group of parallel calls"),
        # The attempt's start and the suspension until its retry; not the failed attempt's end.
        pytest.param("commits-test-retry-later", 2, id="a retry after a delay"),
    ],
)
def test_a_runs_writes_that_a_replay_makes_again_do_not_wait_for_the_disk(
    commits_without_disk_wait, name, fast
):
    inst = workflows.create(name)
    run_instance(inst.id)
    assert len(commits_without_disk_wait) == fast


def resumed_run(inst) -> None:
    inst.pause()
    inst.resume()
    run_instance(inst.id)


def test_a_run_resumed_while_a_child_runs_waits_again_without_waiting_for_the_disk(commits_without_disk_wait):
    inst = workflows.create("commits-test-run-child")
    run_instance(inst.id)
    commits_without_disk_wait.clear()

    resumed_run(inst)
    assert inst.status()["status"] == "waiting"
    assert commits_without_disk_wait == ["fast"]


def test_a_run_resumed_while_its_calls_are_queued_queues_them_again_without_waiting_for_the_disk(
    commits_without_disk_wait,
):
    inst = workflows.create("commits-test-map")
    run_instance(inst.id)
    commits_without_disk_wait.clear()

    resumed_run(inst)
    assert inst.status()["status"] == "waiting"
    assert claimable_calls().count() == 2
    assert commits_without_disk_wait == ["fast"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_an_attempts_one_statement_start_does_not_wait_for_the_disk_and_its_end_does():
    """Outside a transaction (as in a worker) the start's statement is its own transaction,
    and `SET LOCAL synchronous_commit` sent with it in one round trip applies to it alone."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    inst = workflows.create("commits-test-step")
    with CaptureQueriesContext(connection) as captured:
        run_instance(inst.id)

    assert inst.status()["output"] == 1
    attempts = [query["sql"] for query in captured if "WITH held AS" in query["sql"]]
    start, end = attempts
    assert start.startswith("SET LOCAL synchronous_commit TO OFF; WITH held AS")
    assert end.startswith("WITH held AS")
    # The general path's writes that a replay makes again (here the instance's end is not
    # one of them) set it in their transaction.
    with CaptureQueriesContext(connection) as captured:
        run_instance(workflows.create("commits-test-sleep").id)
    assert "SET LOCAL synchronous_commit TO OFF" in [query["sql"] for query in captured]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")  # the setting did not outlive the start
        assert cursor.fetchone() == ("on",)


@pytest.mark.postgres
def test_inside_a_callers_transaction_the_one_statement_start_leaves_its_durability_alone():
    """SET LOCAL there would weaken the caller's whole transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    inst = workflows.create("commits-test-step")
    with CaptureQueriesContext(connection) as captured:
        run_instance(inst.id)  # inside the test's transaction

    assert inst.status()["output"] == 1
    assert not [query for query in captured if "synchronous_commit" in query["sql"]]
