"""Retries: limit, delay and backoff; timeouts; non-retryable errors; StepFailed."""

import time
from collections import Counter

import pytest
from django.db import OperationalError, connection

import workflows
from workflows import NonRetryableError, RetryPolicy, StepFailed, attempt_sql, runtime, workflow
from workflows.models import Instance, Step, StepRun
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

attempts: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_attempts():
    attempts.clear()


class Flaky(Exception):
    pass


def fail_times(label, failures, value="ok"):
    attempts[label] += 1
    if attempts[label] <= failures:
        raise Flaky(f"{label} failure {attempts[label]}")
    return value


def retry_waits(instance_id):
    """The delay before each retry, read from the recorded failed attempts."""
    runs = list(StepRun.objects.filter(step__instance_id=instance_id).order_by("id"))
    return [(b.started_at - a.ended_at).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]


@workflow("retries-test-backoff")
def backoff_flow(event, step):
    return step.do(
        "flaky",
        fail_times,
        "flaky",
        event.payload["failures"],
        retries={"limit": 3, "delay": "10 seconds", "backoff": event.payload["backoff"]},
    )


@pytest.mark.parametrize(
    ("backoff", "waits"),
    [("constant", [10, 10, 10]), ("linear", [10, 20, 30]), ("exponential", [10, 20, 40])],
)
def test_each_backoff_kind_waits_the_documented_delays_between_attempts(backoff, waits):
    inst = workflows.create("retries-test-backoff", params={"failures": 3, "backoff": backoff})
    run_until_idle()
    for wait in waits:
        assert inst.status()["status"] == "waiting"
        advance(wait - 1)
        assert inst.status()["status"] == "waiting", "retried before its delay"
        advance(1)
    assert inst.status() == {"status": "complete", "output": "ok", "error": None}
    assert attempts["flaky"] == 4
    assert [round(w) for w in retry_waits(inst.id)] == waits


def test_a_retry_delay_suspends_the_instance_instead_of_holding_a_worker():
    inst = workflows.create("retries-test-backoff", params={"failures": 1, "backoff": "constant"})
    run_until_idle()
    row = Instance.objects.get(pk=inst.id)
    assert (row.status, row.lease_token) == ("waiting", "")
    assert row.wake_at == Step.objects.get(instance=row).wake_at


def test_when_attempts_are_used_up_the_last_error_errors_the_instance():
    inst = workflows.create("retries-test-backoff", params={"failures": 99, "backoff": "constant"})
    run_until_idle()
    for _ in range(3):
        advance(10)
    assert attempts["flaky"] == 4  # limit 3 = three retries after the first attempt
    assert inst.status() == {
        "status": "errored",
        "output": None,
        "error": {"type": "Flaky", "message": "flaky failure 4"},
    }
    assert "Traceback" in StepRun.objects.filter(step__instance_id=inst.id).last().traceback


@workflow("retries-test-limit-zero")
def limit_zero_flow(event, step):
    return step.do("once", fail_times, "once", 1, retries=RetryPolicy(limit=0))


def test_limit_zero_means_a_single_attempt():
    inst = workflows.create("retries-test-limit-zero")
    run_until_idle()
    assert inst.status()["status"] == "errored"
    assert attempts["once"] == 1


class CardDeclined(NonRetryableError):
    pass


def decline():
    attempts["decline"] += 1
    raise CardDeclined("card 4242 declined")


@workflow("retries-test-non-retryable")
def non_retryable_flow(event, step):
    return step.do("charge", decline, retries={"limit": 5, "delay": 0})


def test_non_retryable_error_fails_the_step_at_once():
    inst = workflows.create("retries-test-non-retryable")
    run_until_idle()
    assert attempts["decline"] == 1
    assert inst.status()["error"] == {"type": "CardDeclined", "message": "card 4242 declined"}


@workflow("retries-test-caught")
def caught_flow(event, step):
    try:
        step.do("doomed", fail_times, "doomed", 99, retries={"limit": 1, "delay": 0})
    except StepFailed as failure:
        step.sleep("after failure", 30)
        return {
            "step": failure.step_name,
            "attempts": failure.attempts,
            "type": failure.error_type,
            "message": failure.message,
        }


def test_step_failed_can_be_caught_and_is_raised_again_on_replay():
    inst = workflows.create("retries-test-caught")
    run_until_idle()
    advance(30)  # replays past the failed step: StepFailed again, no new attempt
    assert inst.status()["output"] == {
        "step": "doomed",
        "attempts": 2,
        "type": "Flaky",
        "message": "doomed failure 2",
    }
    assert attempts["doomed"] == 2


def slow(seconds):
    attempts["slow"] += 1
    time.sleep(seconds)
    return "finished"


@workflow("retries-test-timeout")
def timeout_flow(event, step):
    return step.do("slow", slow, 5, timeout=0.2, retries={"limit": 1, "delay": 0})


def test_an_attempt_over_its_timeout_is_interrupted_and_counts_as_failed():
    inst = workflows.create("retries-test-timeout")
    started = time.monotonic()
    run_until_idle()
    assert time.monotonic() - started < 2, "the attempts were not interrupted"
    assert attempts["slow"] == 2
    error = inst.status()["error"]
    assert error["type"] == "StepTimeout"
    assert 'step "slow"' in error["message"]


def busy_and_swallow(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: B036 - a careless step that swallows even the interrupt
            pass
    return "late"


@workflow("retries-test-late-result")
def late_result_flow(event, step):
    return step.do("late", busy_and_swallow, 0.3, timeout=0.1, retries={"limit": 0})


def test_a_result_returned_after_the_timeout_still_counts_as_a_failed_attempt():
    inst = workflows.create("retries-test-late-result")
    run_until_idle()
    assert inst.status()["error"]["type"] == "StepTimeout"


@workflow("retries-test-bad-policy")
def bad_policy_flow(event, step):
    return step.do("x", fail_times, "x", 0, retries={"limit": 1, "backoff": "sometimes"})


def test_a_bad_retry_policy_errors_the_instance_before_the_step_runs():
    inst = workflows.create("retries-test-bad-policy")
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "backoff" in inst.status()["error"]["message"]
    assert attempts["x"] == 0


@workflow("retries-test-timeout-too-long")
def timeout_too_long_flow(event, step):
    return step.do("export", lambda: "done", timeout="2 hours")


def test_a_step_timeout_longer_than_a_worker_task_errors_the_instance_clearly():
    inst = workflows.create("retries-test-timeout-too-long")
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "ValueError"
    assert 'step "export": timeout 2 hours does not fit in a worker task' in status["error"]["message"]
    assert "DURABLE_TASK_TIMEOUT" in status["error"]["message"]


class Unusual(BaseException):
    pass


def raise_base_exception(kind):
    attempts[kind] += 1
    raise {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt(), "Unusual": Unusual("odd")}[
        kind
    ]


@workflow("retries-test-base-exception")
def base_exception_flow(event, step):
    return step.do("exit", raise_base_exception, event.payload, retries={"limit": 1, "delay": 0})


@pytest.mark.parametrize(
    ("kind", "message"), [("SystemExit", "3"), ("KeyboardInterrupt", "KeyboardInterrupt"), ("Unusual", "odd")]
)
def test_a_base_exception_in_a_step_fails_the_attempt_with_its_real_type_and_is_retried(kind, message):
    inst = workflows.create("retries-test-base-exception", params=kind)
    run_until_idle()  # the exception does not escape the run

    assert inst.status()["status"] == "errored"
    assert inst.status()["error"] == {"type": kind, "message": message}
    assert attempts[kind] == 2
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("attempt")
    assert [(run.outcome, run.error_type) for run in runs] == [("failed", kind), ("failed", kind)]
    assert "raise_base_exception" in runs[0].traceback
    assert not Step.objects.filter(instance_id=inst.id, status="running").exists()


@workflow("retries-test-base-exception-in-workflow")
def base_exception_in_workflow_flow(event, step):
    step.do("fine", fail_times, "fine", 0)
    raise SystemExit("the workflow itself exits")


def test_a_base_exception_in_the_workflow_function_errors_the_instance():
    inst = workflows.create("retries-test-base-exception-in-workflow")
    run_until_idle()
    assert inst.status()["error"] == {"type": "SystemExit", "message": "the workflow itself exits"}


@workflow("retries-test-long-backoff")
def long_backoff_flow(event, step):
    return step.do(
        "forever",
        fail_times,
        "forever",
        10_000,
        retries={"limit": 35, "delay": "1 day", "backoff": "exponential"},
    )


def test_exponential_backoff_past_the_largest_duration_is_capped_instead_of_overflowing():
    inst = workflows.create("retries-test-long-backoff")
    run_until_idle()
    while inst.status()["status"] == "waiting":
        advance("36500 days")  # 2 ** 34 days would overflow a datetime: the delay is capped
    assert inst.status()["status"] == "errored"
    assert attempts["forever"] == 36
    step = Step.objects.get(instance_id=inst.id)
    assert (step.status, step.attempts) == ("failed", 36)
    assert not StepRun.objects.filter(step=step, outcome="running").exists()


@workflow("retries-test-huge-delay")
def huge_delay_flow(event, step):
    return step.do("never", fail_times, "never", 0, retries={"limit": 1, "delay": "999999999 days"})


def test_a_retry_delay_too_long_errors_the_instance_clearly_before_the_step_runs():
    inst = workflows.create("retries-test-huge-delay")
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "invalid duration '999999999 days'" in inst.status()["error"]["message"]
    assert attempts["never"] == 0


@workflow("retries-test-end-write")
def end_write_flow(event, step):
    return step.do("compute", fail_times, "compute", 0, "computed")


def test_a_computed_result_survives_a_transient_error_of_the_write_that_records_it():
    failed = []

    # Twice: on PostgreSQL the first is the one-statement write (attempt_sql), the second
    # the general path's first try; the result must still be recorded, once.
    def fail_the_first_success_write(execute, sql, params, many, context):
        writes_step = 'UPDATE "workflows_step"' in sql
        if len(failed) < 2 and writes_step and "succeeded" in (params or ()):
            failed.append(sql)
            raise OperationalError("database is locked (injected by the test)")
        return execute(sql, params, many, context)

    inst = workflows.create("retries-test-end-write")
    with connection.execute_wrapper(fail_the_first_success_write):
        run_until_idle()

    assert len(failed) == 2, "the test did not inject its failures"
    assert inst.status() == {"status": "complete", "output": "computed", "error": None}
    assert attempts["compute"] == 1
    runs = StepRun.objects.filter(step__instance_id=inst.id)
    assert list(runs.values_list("attempt", "outcome")) == [(1, "succeeded")]


def failing_success_writes(failures: int):
    """An execute wrapper failing the first `failures` writes of a step's success."""
    failed: list[str] = []

    def wrapper(execute, sql, params, many, context):
        if len(failed) < failures and 'UPDATE "workflows_step"' in sql and "succeeded" in (params or ()):
            failed.append(sql)
            raise OperationalError("database is locked (injected by the test)")
        return execute(sql, params, many, context)

    return wrapper, failed


def test_the_write_of_a_result_is_tried_once_after_each_pause_and_a_last_time(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "END_WRITE_PAUSES", (0.0, 0.0))  # two pauses, not seconds of them
    # All but the last try fail (on PostgreSQL the one-statement write first).
    wrapper, failed = failing_success_writes(2 + attempt_sql.applies())
    inst = workflows.create("retries-test-end-write")
    with connection.execute_wrapper(wrapper), caplog.at_level("WARNING", logger="workflows.runtime"):
        run_until_idle()

    assert inst.status() == {"status": "complete", "output": "computed", "error": None}
    assert attempts["compute"] == 1
    retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert (
        retried
        == [f"run of {inst.id}: write failed (database is locked (injected by the test)); trying again"] * 2
    )


def test_a_run_whose_result_cannot_be_written_gives_up_naming_the_instance_and_the_error(monkeypatch, caplog):
    """Its instance keeps its lease until the lease runs out; then it is recovered and the
    step, whose result was never recorded, runs again."""
    monkeypatch.setattr(runtime, "END_WRITE_PAUSES", (0.0,))
    wrapper, failed = failing_success_writes(100)
    inst = workflows.create("retries-test-end-write")
    with connection.execute_wrapper(wrapper), caplog.at_level("WARNING", logger="workflows.runtime"):
        with pytest.raises(runtime._EngineFailure, match=r"database is locked \(injected by the test\)"):
            runtime.run_instance(inst.id)

    abandoned = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in abandoned] == [f"run of {inst.id} abandoned: the engine could not write"]
    assert abandoned[0].exc_info is not None  # with the database's error and where it came from
    assert len(failed) == 2 + attempt_sql.applies()
    advance("11 minutes")  # past the lease of the attempt (the step's timeout and the grace)
    assert inst.status()["output"] == "computed"
    assert attempts["compute"] == 2
