"""step.parallel and step.map: each call a memoised, retried step of its own, run by a task
of its own while the instance waits holding no worker."""

from collections import Counter
from datetime import timedelta

import pytest
from django_q.models import OrmQ

import workflows
from support import step_metrics
from workflows import StepFailed, clock, step_info, workflow
from workflows.broker import CALL_TASK
from workflows.calls import claimable_calls, run_call
from workflows.models import Instance, Step, StepRun
from workflows.step import MAX_CALLS
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

ran: Counter[str] = Counter()
failing: dict[str, int] = {}  # item -> how many more attempts fail
before_group = {"as": "do"}  # what the step before a group is now (the workflow changed)


@pytest.fixture(autouse=True)
def _reset():
    ran.clear()
    failing.clear()
    before_group["as"] = "do"


def price(item: str) -> dict:
    ran[item] += 1
    if failing.get(item, 0) > 0:
        failing[item] -= 1
        raise ConnectionError(f"price service down for {item}")
    return {"item": item, "price": len(item)}


@workflow("parallel-test-map")
def map_flow(event, step):
    items = event.payload["items"]
    ran["workflow"] += 1
    prices = step.map(
        "price", price, items, retries={"limit": event.payload.get("retries", 0), "delay": "1 minute"}
    )
    total = step.do("total", lambda: sum(p["price"] for p in prices))
    return {"prices": prices, "total": total}


@workflow("parallel-test-calls")
def calls_flow(event, step):
    base = step.do("base", lambda: 10)

    def add(n):  # a closure over a recorded result: nothing but ids crosses the queue
        return base + n

    return step.parallel("mixed", [(add, 1), lambda: step_info().name, (add, 2)])


@workflow("parallel-test-catch")
def catch_flow(event, step):
    try:
        step.map("price", price, event.payload["items"])
    except StepFailed as failed:
        return {"failed": failed.step_name, "type": failed.error_type, "message": failed.message}
    return "no failure"


def test_map_returns_each_calls_result_in_order_and_records_each_call_as_a_step():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee", "milk"]})
    run_until_idle()

    assert inst.status()["output"] == {
        "prices": [{"item": "tea", "price": 3}, {"item": "coffee", "price": 6}, {"item": "milk", "price": 4}],
        "total": 13,
    }
    steps = {step.name: step for step in Step.objects.filter(instance_id=inst.id)}
    assert steps["price"].kind == "parallel" and steps["price"].status == "succeeded"
    assert [steps[f"price[{i}]"].result["item"] for i in range(3)] == ["tea", "coffee", "milk"]
    assert all(steps[f"price[{i}]"].group_id == steps["price"].pk for i in range(3))


def test_the_instance_waits_holding_no_worker_while_its_calls_are_queued():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    from workflows.runtime import run_instance

    assert run_instance(inst.id) == "suspended"
    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.lease_token, row.wake_at) == ("waiting", "", None)
    assert claimable_calls().count() == 2
    assert ran["tea"] == ran["coffee"] == 0  # not run by the instance's run


def test_each_call_runs_once_and_the_end_of_the_last_one_resumes_the_instance():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    from workflows.runtime import run_instance

    run_instance(inst.id)
    first, second = claimable_calls().order_by("id").values_list("id", flat=True)
    assert run_call(first) == "succeeded"
    assert Instance.objects.get(pk=inst.id).status == "waiting"  # one call still to end
    assert run_call(second) == "succeeded"
    assert Instance.objects.get(pk=inst.id).status == "queued"
    assert run_call(first) == "skipped"  # a second delivery finds nothing to do

    run_until_idle()
    assert inst.status()["status"] == "complete"
    assert (ran["tea"], ran["coffee"]) == (1, 1)


def test_calls_may_be_closures_and_tuples_and_know_their_own_step_name():
    inst = workflows.create("parallel-test-calls")
    run_until_idle()
    assert inst.status()["output"] == [11, "mixed[1]", 12]


def a_call_knows(item: str) -> tuple:
    info = step_info()
    return (info.instance_id, info.name, info.attempt)


@workflow("parallel-test-info")
def info_flow(event, step):
    return step.map("info", a_call_knows, ["tea"], retries={"limit": 1, "delay": 0})


def test_a_call_knows_its_instance_its_step_name_and_its_attempt():
    inst = workflows.create("parallel-test-info")
    run_until_idle()
    assert inst.status()["output"] == [[inst.id, "info[0]", 1]]


def test_a_calls_attempts_count_in_the_step_metrics_of_its_workflow():
    before = step_metrics("parallel-test-map")
    failing["tea"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea"], "retries": 1})
    run_until_idle()
    advance("1 minute")  # the retry
    assert inst.status()["status"] == "complete"

    # Started, succeeded, failed, durations of successes and of failures: two attempts of
    # the call, then one of the step "total" after the map.
    after = step_metrics("parallel-test-map")
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 2, 1, 2, 1]


@workflow("parallel-test-base")
def base_flow(event, step):
    base = step.do("base", lambda: event.payload)
    return step.map("add", lambda n: base + n, [1, 2])


def test_a_calls_replay_reads_its_own_instances_steps_not_another_instances():
    first = workflows.create("parallel-test-base", params=10)
    second = workflows.create("parallel-test-base", params=20)
    run_until_idle()
    assert (first.status()["output"], second.status()["output"]) == ([11, 12], [21, 22])


@workflow("parallel-test-paused-before-map")
def paused_before_map(event, step):
    step.do("pause myself", workflows.get(event.instance_id).pause)
    return step.map("price", price, ["tea"])


def test_an_instance_paused_during_a_step_starts_no_parallel_calls_until_resumed():
    inst = workflows.create("parallel-test-paused-before-map")
    run_until_idle()
    assert inst.status()["status"] == "paused"
    assert not Step.objects.filter(instance_id=inst.id, name="price").exists()

    inst.resume()
    run_until_idle()
    assert inst.status()["output"] == [{"item": "tea", "price": 3}]


def test_a_failing_call_is_retried_by_its_policy_after_its_delay_while_the_others_finish():
    failing["coffee"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"], "retries": 2})
    run_until_idle()

    call = Step.objects.get(instance_id=inst.id, name="price[1]")
    assert (call.status, call.error["type"]) == ("retrying", "ConnectionError")
    row = Instance.objects.get(pk=inst.id)
    assert row.status == "waiting" and row.wake_at == call.wake_at  # wakes for the retry

    advance("1 minute")
    assert inst.status()["status"] == "complete"
    assert (ran["tea"], ran["coffee"]) == (1, 2)
    outcomes = list(StepRun.objects.filter(step=call).values_list("attempt", "outcome"))
    assert outcomes == [(1, "failed"), (2, "succeeded")]
    call.refresh_from_db()
    assert (call.status, call.wake_at) == ("succeeded", None)  # no retry left pending


def test_a_call_that_fails_for_good_is_the_steps_failure_once_every_call_has_ended():
    failing["coffee"] = 99
    inst = workflows.create("parallel-test-catch", params={"items": ["tea", "coffee", "milk"]})
    run_until_idle()
    assert Step.objects.get(instance_id=inst.id, name="price").status == "waiting"
    for _retry in range(5):  # the default policy: 5 retries, each after a delay
        advance("1 hour")

    assert inst.status()["output"] == {
        "failed": "price[1]",
        "type": "ConnectionError",
        "message": "price service down for coffee",
    }
    assert (ran["tea"], ran["coffee"], ran["milk"]) == (1, 6, 1)  # default policy: 5 retries
    assert Step.objects.get(instance_id=inst.id, name="price").status == "failed"


def test_retry_of_an_instance_errored_by_a_call_reruns_the_failed_calls_only():
    failing["coffee"] = failing["milk"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee", "milk"]})
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "ConnectionError"

    inst.retry()
    run_until_idle()

    assert inst.status()["status"] == "complete"
    assert (ran["tea"], ran["coffee"], ran["milk"]) == (1, 2, 2)


def test_completed_calls_are_not_run_again_when_the_instance_replays():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    run_until_idle()
    assert ran["workflow"] == 2 + 2  # the instance's run twice, and one replay per call
    assert (ran["tea"], ran["coffee"]) == (1, 1)
    assert inst.status()["status"] == "complete"


def test_a_call_whose_worker_died_is_recorded_abandoned_and_run_again():
    inst = workflows.create("parallel-test-map", params={"items": ["tea"], "retries": 1})
    from workflows.calls import _claim
    from workflows.clock import now
    from workflows.runtime import run_instance

    run_instance(inst.id)
    call_id = claimable_calls().get().pk
    _claim(call_id, now())  # claimed by a worker that then died: nothing ran

    advance("1 minute")  # its lease runs out; the timer wakes the instance, which re-queues it

    assert inst.status()["status"] == "complete"
    attempts = list(StepRun.objects.filter(step_id=call_id).values_list("attempt", "outcome", "error_type"))
    assert attempts == [(1, "failed", "AttemptAbandoned"), (2, "succeeded", "")]
    assert StepRun.objects.get(step_id=call_id, attempt=1).error_message == (
        'attempt 1 of step "price[0]" never finished: '
        "its worker stopped (crashed, killed, or went past its timeout)"
    )
    assert ran["tea"] == 1


def test_a_paused_instances_queued_calls_wait_for_resume():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    from workflows.runtime import run_instance

    run_instance(inst.id)
    inst.pause()
    run_until_idle()
    assert ran["tea"] == ran["coffee"] == 0

    inst.resume()
    run_until_idle()
    assert inst.status()["status"] == "complete"


def test_a_calls_task_starts_nothing_while_its_instance_is_paused_though_other_instances_wait_for_theirs():
    from workflows.runtime import run_instance

    other = workflows.create("parallel-test-map", params={"items": ["coffee"]})
    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_instance(other.id)
    run_instance(inst.id)
    inst.pause()
    call = Step.objects.get(instance_id=inst.id, group__isnull=False)

    assert run_call(call.pk) == "skipped"
    assert Step.objects.get(pk=call.pk).status == "queued"
    assert ran["tea"] == 0


def test_a_calls_task_from_before_its_instance_restarted_starts_nothing():
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_instance(inst.id)
    call = Step.objects.get(instance_id=inst.id, group__isnull=False)
    inst.restart()

    assert run_call(call.pk) == "skipped"
    assert ran["tea"] == 0


def test_terminating_an_instance_cancels_its_queued_calls():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    from workflows.runtime import run_instance

    run_instance(inst.id)
    inst.terminate()
    run_until_idle()
    assert ran["tea"] == ran["coffee"] == 0
    assert claimable_calls().count() == 0


def test_restart_from_a_step_after_the_group_keeps_its_calls():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    run_until_idle()

    inst.restart(from_step="total")
    run_until_idle()

    assert inst.status()["output"]["total"] == 9
    assert (ran["tea"], ran["coffee"]) == (1, 1)
    copies = Step.objects.filter(instance_id=inst.id, generation=2)
    group = copies.get(name="price")
    assert set(copies.filter(group__isnull=False).values_list("group_id", flat=True)) == {group.pk}


def test_restart_from_the_group_runs_its_calls_again():
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    run_until_idle()
    inst.restart(from_step="price")
    run_until_idle()
    assert inst.status()["status"] == "complete"
    assert (ran["tea"], ran["coffee"]) == (2, 2)


def test_a_call_is_not_a_step_to_restart_from():
    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_until_idle()
    with pytest.raises(ValueError, match='no recorded step named "price\\[0\\]"'):
        inst.restart(from_step="price[0]")


def test_an_empty_map_returns_an_empty_list_at_once():
    inst = workflows.create("parallel-test-map", params={"items": []})
    run_until_idle()
    assert inst.status()["output"] == {"prices": [], "total": 0}


@workflow("parallel-test-changing")
def changing_flow(event, step):
    return step.map("price", price, ["tea", "coffee"] if not ran["changed"] else ["tea"])


def test_a_different_number_of_calls_on_replay_is_a_nondeterminism_error():
    inst = workflows.create("parallel-test-changing")
    from workflows.runtime import run_instance

    run_instance(inst.id)
    ran["changed"] = 1
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "NonDeterminismError"
    assert (
        'step "price" was recorded with 2 parallel calls but the workflow now makes 1'
        in (status["error"]["message"])
    )


@workflow("parallel-test-bad")
def bad_flow(event, step):
    what = event.payload
    if what == "not a list":
        return step.parallel("p", "abc")
    if what == "not callable":
        return step.parallel("p", [(print, 1), 42])
    if what == "too many":
        return step.map("p", price, ["x"] * (MAX_CALLS + 1))
    if what == "long name":
        return step.map("p" * 255, price, ["x"] * 10)
    return step.map("p", "not a function", [1])


@pytest.mark.parametrize(
    ("what", "error"),
    [
        ("not a list", 'step "p": calls must be a list (or another sequence), got str'),
        ("not callable", 'step "p": call 1 must be a callable or a tuple (callable, *args), got 42'),
        ("too many", f'step "p": {MAX_CALLS + 1} parallel calls is more than {MAX_CALLS}'),
        ("long name", "parallel call name"),
        ("fn", "'not a function' is not callable"),
    ],
)
def test_bad_calls_error_the_instance_with_a_message_naming_the_problem(what, error):
    inst = workflows.create("parallel-test-bad", params=what)
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert error in status["error"]["message"]
    assert not Step.objects.filter(instance_id=inst.id).exists()


def test_a_retrying_call_holds_no_worker_and_the_instance_sleeps_until_its_retry():
    failing["tea"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea"], "retries": 1})
    run_until_idle()
    row = Instance.objects.get(pk=inst.id)
    assert row.status == "waiting"
    call = Step.objects.get(instance_id=inst.id, name="price[0]")
    assert call.wake_at - call.runs.get().ended_at == timedelta(minutes=1)
    assert claimable_calls().count() == 0


def test_the_console_shows_a_parallel_step_with_its_calls_grouped_under_it(django_user_model):
    from django.contrib.auth.models import Group
    from django.test import Client
    from django.urls import reverse

    from workflows.roles import VIEWERS

    failing["coffee"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"], "retries": 1}, id="p-1")
    run_until_idle()
    user = django_user_model.objects.create_user(username="watcher", password="pw")
    user.groups.set(Group.objects.filter(name=VIEWERS))
    client = Client()
    client.force_login(user)

    page = client.get(reverse("workflows:instance_detail", args=[inst.id])).content.decode()

    assert "2 parallel calls, each a step of its own" in page
    group, calls = page.split('<ol class="attempts calls">', 1)
    assert "<strong>price[0]</strong>" in calls and "<strong>price[1]</strong>" in calls
    assert "<strong>price[0]</strong>" not in group  # not steps of the sequence
    assert "price service down for coffee" in calls
    assert 'value="price[1]"' not in page  # a call is not a step to restart from


# --- a call is claimed once (PostgreSQL) -----------------------------------------------


def claim_call_until_the_other_waits(step_id: int, waiter_pid: int, holding) -> None:
    """Claim the call as a worker does and commit only once backend `waiter_pid` waits
    for its row lock (at most 10 s)."""
    import time

    from django.db import connection, transaction

    from workflows.calls import _claim
    from workflows.clock import now

    try:
        with transaction.atomic():
            assert _claim(step_id, now()) is not None
            holding.set()
            for _ in range(1000):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [waiter_pid])
                    if cursor.fetchone()[0]:
                        break
                time.sleep(0.01)
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_call_delivered_twice_at_once_is_claimed_by_one_worker_only():
    import threading

    from django.db import connection

    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_instance(inst.id)
    call_id = claimable_calls().get().pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    holding = threading.Event()
    other = threading.Thread(target=claim_call_until_the_other_waits, args=(call_id, pid, holding))
    other.start()
    try:
        assert holding.wait(10)
        outcome = run_call(call_id)  # waits for the other claim's row lock, then finds it taken
    finally:
        other.join(15)

    assert outcome == "skipped"
    assert ran["tea"] == 0
    assert list(StepRun.objects.filter(step_id=call_id).values_list("attempt", flat=True)) == [1]


# --- what a call's replay goes through, and what retry and wake-ups change --------------


@workflow("parallel-test-child")
def child_of_map(event, step):
    return step.do("double", lambda: 2 * event.payload)


@workflow("parallel-test-after-child-and-patch")
def after_child_and_patch(event, step):
    doubled = step.run_workflow("child", "parallel-test-child", params=21)
    tagged = "new" if step.patched("tagging") else "old"
    try:
        step.do("flaky", lambda: (_ for _ in ()).throw(ValueError("no")), retries={"limit": 0})
    except StepFailed:
        pass
    return step.map("add", lambda n: f"{tagged}:{doubled + n}", [1, 2])


def test_a_calls_replay_passes_recorded_children_patches_and_caught_failures_to_reach_its_call():
    inst = workflows.create("parallel-test-after-child-and-patch")
    run_until_idle()
    assert inst.status()["output"] == ["new:43", "new:44"]


@workflow("parallel-test-failing-child")
def failing_child(event, step):
    raise LookupError("no such order")


@workflow("parallel-test-after-failed-child")
def after_failed_child(event, step):
    try:
        step.run_workflow("child", "parallel-test-failing-child")
    except StepFailed as failed:
        seen = str(failed)
    return step.map("echo", lambda n: f"{n}: {seen}", [1])


def test_a_calls_replay_raises_a_failed_childs_failure_as_the_run_did():
    inst = workflows.create("parallel-test-after-failed-child")
    run_until_idle()
    assert inst.status()["output"] == [
        '1: step "child" failed after 1 attempt(s): LookupError: no such order'
    ]


def test_a_call_whose_replay_does_not_reach_its_group_fails_for_good_naming_why():
    inst = workflows.create("parallel-test-changing")
    from workflows.runtime import run_instance

    run_instance(inst.id)
    call = claimable_calls().order_by("id").last()  # price[1]
    ran["changed"] = 1  # the workflow now makes one call: the replay cannot reach call 1
    assert run_call(call.pk) == "failed"
    call.refresh_from_db()
    assert call.error["type"] == "NonDeterminismError"
    assert call.error["message"].startswith(
        "replaying the workflow to this parallel call did not follow its recorded steps: "
        'step "price" now makes 1 calls, not 2 or more'
    )
    assert call.attempts == 1  # not retried


@workflow("parallel-test-changed-before-group")
def changed_before_group(event, step):
    if before_group["as"] == "do":
        step.do("check #1", lambda: "checked")
    elif before_group["as"] == "sleep":
        step.sleep("check #1", "1 second")
    else:
        step.do("renamed", lambda: "checked")
    return step.map("price", price, ["tea"])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("sleep", 'step "check #1" (sleep) is not recorded as over before the parallel call'),
        ("rename", 'step "renamed" (do) is not recorded as over before the parallel call'),
    ],
)
def test_a_calls_replay_meeting_a_changed_step_before_its_group_fails_for_good_naming_the_step(change, why):
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-changed-before-group")
    run_instance(inst.id)
    call = claimable_calls().get()
    before_group["as"] = change

    assert run_call(call.pk) == "failed"
    call.refresh_from_db()
    assert call.error == {
        "type": "NonDeterminismError",
        "message": f"replaying the workflow to this parallel call did not follow its recorded steps: {why}",
    }
    assert ran["tea"] == 0


def test_retrying_an_instance_reruns_its_own_failed_calls_and_reopens_their_group_only():
    failing["coffee"] = 1
    first = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    run_until_idle()
    failing["coffee"] = 1
    second = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})
    run_until_idle()
    assert first.status()["status"] == second.status()["status"] == "errored"

    first.retry()
    group = Step.objects.get(instance_id=first.id, name="price")
    assert (group.status, group.error, group.completed_at) == ("waiting", None, None)
    assert Step.objects.get(instance_id=second.id, name="price[1]").status == "failed"  # untouched
    run_until_idle()
    assert first.status()["status"] == "complete"
    assert second.status()["status"] == "errored"


def test_a_calls_retry_moves_a_waiting_instances_wake_up_earlier_never_later_nor_a_paused_ones():
    from datetime import timedelta

    from workflows import lifecycle
    from workflows.clock import now

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    from workflows.runtime import run_instance

    run_instance(inst.id)
    row = Instance.objects.get(pk=inst.id)
    soon, later = now() + timedelta(minutes=1), now() + timedelta(minutes=5)
    lifecycle.due_by(row, later)
    assert Instance.objects.get(pk=inst.id).wake_at == later
    lifecycle.due_by(row, soon)
    assert Instance.objects.get(pk=inst.id).wake_at == soon
    lifecycle.due_by(row, later)
    assert Instance.objects.get(pk=inst.id).wake_at == soon  # not pushed back

    inst.pause()
    paused = Instance.objects.get(pk=inst.id)
    lifecycle.due_by(paused, now())
    assert Instance.objects.get(pk=inst.id).wake_at == soon  # a paused instance is woken by resume


# --- the instance's run finding its group not over (woken, resumed or retried) --------


def run_the_instance_after_pause_and_resume(inst) -> None:
    """A run that replays to the group while it is not over (here: after resume)."""
    from workflows.runtime import run_instance

    inst.pause()
    inst.resume()
    run_instance(inst.id)


def test_a_run_finding_its_calls_retrying_later_queues_none_early_and_sleeps_until_the_first_retry():
    from workflows.runtime import run_instance

    failing["tea"] = failing["coffee"] = 1
    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"], "retries": 1})
    run_instance(inst.id)
    tea, coffee = claimable_calls().order_by("id")
    run_call(tea.pk)  # fails: retries in a minute
    clock.shift(timedelta(seconds=30))
    run_call(coffee.pk)  # fails: retries in a minute, half a minute after tea

    run_the_instance_after_pause_and_resume(inst)

    tea_retry = Step.objects.get(pk=tea.pk).wake_at
    assert tea_retry < Step.objects.get(pk=coffee.pk).wake_at
    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.wake_at) == ("waiting", tea_retry)
    assert not claimable_calls().exists()  # neither is queued before its retry is due
    advance("2 minutes")
    assert inst.status()["status"] == "complete"
    assert (ran["tea"], ran["coffee"]) == (2, 2)


def test_a_run_finding_a_call_queued_queues_its_task_again_for_a_task_that_came_while_paused():
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_instance(inst.id)
    call = claimable_calls().get()
    inst.pause()
    assert run_call(call.pk) == "skipped"  # its task came while the instance was paused
    OrmQ.objects.all().delete()

    inst.resume()
    run_instance(inst.id)

    call_tasks = [task.args() for task in OrmQ.objects.order_by("id") if task.func() == CALL_TASK]
    assert call_tasks == [(call.pk,)]


def test_a_run_finding_a_call_running_under_a_live_lease_leaves_it_to_its_worker():
    from workflows.calls import _claim
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea", "coffee"]})

    run_instance(inst.id)
    tea = claimable_calls().order_by("id").first()
    _claim(tea.pk, clock.now())  # a worker runs it now

    run_the_instance_after_pause_and_resume(inst)

    assert list(StepRun.objects.filter(step_id=tea.pk).values_list("attempt", "outcome")) == [(1, "running")]
    assert Step.objects.get(pk=tea.pk).status == "running"


def test_a_call_a_worker_claims_while_the_run_queues_it_again_stays_the_workers(monkeypatch):
    from workflows import calls
    from workflows.calls import _claim
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})
    run_instance(inst.id)
    tea = claimable_calls().get()
    read = calls.calls_of

    def read_then_a_worker_claims(group):
        members = read(group)  # the run sees the call queued ...
        _claim(tea.pk, clock.now())  # ... and a worker takes it (its claim locks the call only)
        return members

    monkeypatch.setattr(calls, "calls_of", read_then_a_worker_claims)
    OrmQ.objects.all().delete()
    run_the_instance_after_pause_and_resume(inst)

    call = Step.objects.get(pk=tea.pk)
    assert (call.status, call.attempts) == ("running", 1), "not put back in the queue for a second worker"
    assert not [task for task in OrmQ.objects.all() if task.func() == CALL_TASK]
    assert Instance.objects.get(pk=inst.id).status == "waiting"


def test_a_call_whose_worker_died_with_no_retries_left_fails_its_group_and_the_instance():
    from workflows.calls import _claim
    from workflows.runtime import run_instance

    inst = workflows.create("parallel-test-map", params={"items": ["tea"]})

    run_instance(inst.id)
    _claim(claimable_calls().get().pk, clock.now())  # claimed by a worker that then died

    advance("1 minute")  # its lease runs out; the timer wakes the instance, whose run ends the call

    status = inst.status()
    assert (status["status"], status["error"]["type"]) == ("errored", "AttemptAbandoned")
    group = Step.objects.get(instance_id=inst.id, name="price")
    assert group.status == "failed"
    assert group.error["type"] == "AttemptAbandoned"
    assert group.completed_at is not None
    assert ran["tea"] == 0
