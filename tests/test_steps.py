"""step.do: run once, record the result, replay it."""

import logging
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf

import workflows
from support import step_metrics
from workflows import workflow
from workflows.models import Instance, Step, StepRun
from workflows.runtime import run_instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.clear()


def counted(label, value=None):
    calls[label] += 1
    return value


@workflow("steps-test-memo")
def memo_flow(event, step):
    first = step.do("first", counted, "first", {"n": event.payload["n"]})
    step.sleep("nap", "1 hour")
    second = step.do("second", counted, "second", first["n"] + 1)
    return {"first": first, "second": second}


def test_completed_steps_are_not_rerun_when_the_instance_resumes():
    inst = workflows.create("steps-test-memo", params={"n": 1})
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    assert calls == {"first": 1}

    advance("1 hour")

    assert inst.status() == {"status": "complete", "output": {"first": {"n": 1}, "second": 2}, "error": None}
    assert calls == {"first": 1, "second": 1}


@workflow("steps-test-repeated-names")
def repeated_names_flow(event, step):
    return [step.do("poll", counted, "poll", i) for i in range(3)]


def test_the_same_name_used_again_is_a_different_step():
    inst = workflows.create("steps-test-repeated-names")
    run_until_idle()
    assert inst.status()["output"] == [0, 1, 2]
    assert list(Step.objects.order_by("id").values_list("key", flat=True)) == ["poll#1", "poll#2", "poll#3"]


@workflow("steps-test-args")
def args_flow(event, step):
    return step.do("join", lambda *parts, sep: sep.join(parts), "a", "b", sep="-")


def test_step_passes_positional_and_keyword_arguments():
    inst = workflows.create("steps-test-args")
    run_until_idle()
    assert inst.status()["output"] == "a-b"


@workflow("steps-test-shape")
def shape_flow(event, step):
    value = step.do("tuple", lambda: (1, {2: "two"}))
    step.sleep("nap", 60)
    return value


def test_first_run_sees_the_result_exactly_as_a_replay_will():
    inst = workflows.create("steps-test-shape")
    run_until_idle()
    advance(60)
    assert inst.status()["output"] == [1, {"2": "two"}]


@workflow("steps-test-none")
def none_result_flow(event, step):
    step.do("returns nothing", counted, "nothing")
    step.sleep("nap", 60)
    return "done"


def test_a_none_result_is_recorded_and_not_rerun():
    inst = workflows.create("steps-test-none")
    run_until_idle()
    advance(60)
    assert inst.status()["output"] == "done"
    assert calls == {"nothing": 1}


@workflow("steps-test-bad-result")
def bad_result_flow(event, step):
    return step.do("make a set", lambda: {1, 2})


def test_a_non_json_result_fails_the_step_at_once_naming_the_step_and_type():
    inst = workflows.create("steps-test-bad-result")
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "PayloadError"
    assert 'step "make a set"' in status["error"]["message"]
    assert "set" in status["error"]["message"]
    assert StepRun.objects.count() == 1  # non-retryable: one attempt only


@workflow("steps-test-big-result")
def big_result_flow(event, step):
    return step.do("too big", lambda: "x" * 5000)


def test_an_oversize_result_fails_the_step_naming_the_size(small_payload_limit):
    inst = workflows.create("steps-test-big-result")
    run_until_idle()
    error = inst.status()["error"]
    assert error["type"] == "PayloadError"
    assert 'step "too big"' in error["message"]
    assert "5,002 bytes" in error["message"]
    assert StepRun.objects.count() == 1


@workflow("steps-test-bad-output")
def bad_output_flow(event, step):
    return object()


def test_a_non_json_workflow_return_value_errors_the_instance():
    inst = workflows.create("steps-test-bad-output")
    run_until_idle()
    assert inst.status()["error"]["type"] == "PayloadError"
    assert "return value" in inst.status()["error"]["message"]


@workflow("steps-test-bad-name")
def bad_name_flow(event, step):
    return step.do("", counted, "never")


def test_an_empty_step_name_errors_the_instance_clearly():
    inst = workflows.create("steps-test-bad-name")
    run_until_idle()
    assert inst.status()["error"]["type"] == "ValueError"
    assert "step name" in inst.status()["error"]["message"]
    assert calls == {}


@workflow("steps-test-event")
def event_flow(event, step):
    return {"payload": event.payload, "id": event.instance_id, "at": event.timestamp.isoformat()}


def test_the_workflow_receives_params_id_and_creation_time():
    inst = workflows.create("steps-test-event", params={"x": 1}, id="event-shape")
    run_until_idle()
    output = inst.status()["output"]
    assert output["payload"] == {"x": 1}
    assert output["id"] == "event-shape"
    assert output["at"].endswith("+00:00")


def test_every_attempt_records_its_start_end_and_duration():
    workflows.create("steps-test-repeated-names")
    run_until_idle()
    runs = list(StepRun.objects.all())
    assert len(runs) == 3
    assert all(r.outcome == "succeeded" and r.ended_at >= r.started_at and r.duration_ms >= 0 for r in runs)


def test_a_run_past_its_time_slice_hands_the_instance_back_between_steps(settings):
    settings.DURABLE_RUN_SLICE_SECONDS = 0  # used up as soon as the first step has run
    inst = workflows.create("steps-test-repeated-names")

    assert run_instance(inst.id) == "stopped"
    assert inst.status()["status"] == "queued"
    assert calls == {"poll": 1}

    run_until_idle()  # each run makes one step of progress
    assert inst.status()["output"] == [0, 1, 2]
    assert calls == {"poll": 3}


def flaky_reporting_its_attempt(fail_until: int) -> dict:
    info = workflows.step_info()
    if info.attempt < fail_until:
        raise ConnectionError(f"attempt {info.attempt} failed")
    return {"instance": info.instance_id, "name": info.name, "attempt": info.attempt}


@workflow("steps-test-step-info")
def step_info_flow(event, step):
    return step.do("call api", flaky_reporting_its_attempt, 3, retries={"limit": 5, "delay": 0})


def test_step_info_tells_a_step_function_its_instance_name_and_attempt():
    inst = workflows.create("steps-test-step-info", id="info-1")
    run_until_idle()
    assert inst.status()["output"] == {"instance": "info-1", "name": "call api", "attempt": 3}


@workflow("steps-test-step-info-outside")
def step_info_outside_flow(event, step):
    step.do("fine", lambda: None)
    return workflows.step_info()  # in the workflow body, not in a step


def test_step_info_outside_a_step_raises_runtime_error():
    with pytest.raises(RuntimeError, match=r"only be called inside a step function"):
        workflows.step_info()
    inst = workflows.create("steps-test-step-info-outside")
    run_until_idle()
    assert inst.status()["error"]["type"] == "RuntimeError"


def take_forty_minutes_of_engine_time(fail: bool) -> str:
    calls["timed"] += 1
    advance("40 minutes")
    if fail:
        raise ConnectionError("down")
    return "done"


@workflow("steps-test-timed")
def timed_flow(event, step):
    try:
        step.do(
            "timed",
            take_forty_minutes_of_engine_time,
            event.payload,
            retries={"limit": 0},
            timeout="50 minutes",
        )
    except workflows.StepFailed:
        return "failed"
    return "done"


@pytest.mark.parametrize(("fail", "status"), [(False, "succeeded"), (True, "failed")])
def test_an_attempt_records_the_engine_time_it_took_and_its_step_when_it_ended(fail, status):
    inst = workflows.create("steps-test-timed", params=fail)
    run_until_idle()

    run = StepRun.objects.get(step__instance_id=inst.id)
    assert 2_400_000 <= run.duration_ms < 2_401_000
    step = Step.objects.get(instance_id=inst.id)
    assert (step.status, step.completed_at) == (status, run.ended_at)


def fails_once() -> str:
    calls["flaky"] += 1
    if calls["flaky"] == 1:
        raise ConnectionError("the first attempt failed")
    return "ok"


@workflow("steps-test-fails-once")
def fails_once_flow(event, step):
    return step.do("flaky", fails_once, retries={"limit": 1, "delay": 0})


def test_a_step_that_succeeds_on_a_retry_keeps_no_error_only_its_failed_attempt_does():
    inst = workflows.create("steps-test-fails-once")
    run_until_idle()

    assert Step.objects.get(instance_id=inst.id).error is None
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("attempt")
    assert list(runs.values_list("outcome", "error_message")) == [
        ("failed", "the first attempt failed"),
        ("succeeded", ""),
    ]


def test_step_info_outside_a_step_says_where_it_may_be_called():
    inst = workflows.create("steps-test-step-info-outside")
    run_until_idle()
    assert inst.status()["error"]["message"] == (
        "workflows.step_info() can only be called inside a step function (step.do)"
    )


@workflow("steps-test-refused-step")
def refused_step_flow(event, step):
    kind = event.payload
    if kind == "empty name":
        return step.do("", counted, "never")
    if kind == "not callable":
        return step.do("call", 42)
    if kind == "zero timeout":
        return step.do("call", counted, "never", timeout=0)
    return step.do("call", counted, "never")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty name", "step name must be a non-empty string of at most"),
        ("not callable", 'step "call": 42 is not callable'),
        ("zero timeout", 'step "call": timeout must be longer than zero, got 0'),
    ],
)
def test_a_step_that_cannot_run_errors_the_instance_saying_why(kind, message):
    inst = workflows.create("steps-test-refused-step", params=kind)
    run_until_idle()
    assert inst.status()["error"]["message"].startswith(message)
    assert calls == {}


def test_a_step_timeout_longer_than_a_worker_task_is_refused_saying_what_to_change(monkeypatch):
    monkeypatch.setattr(Conf, "TIMEOUT", 600)
    inst = workflows.create("steps-test-refused-step", params="default timeout")
    run_until_idle()
    assert inst.status()["error"]["message"] == (
        'step "call": timeout 10 minutes does not fit in a worker task (600 s, DURABLE_TASK_TIMEOUT, '
        "less 60 s): shorten the step's timeout or raise DURABLE_TASK_TIMEOUT"
    )


@workflow("steps-test-raises")
def raises_flow(event, step):
    step.do("fine", counted, "fine")
    if event.payload == "bare":
        raise RuntimeError()
    raise workflows.StepFailed("made up", 1, "Declined", "the workflow's own StepFailed")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("bare", {"type": "RuntimeError", "message": "RuntimeError"}),
        ("own", {"type": "Declined", "message": "the workflow's own StepFailed"}),
    ],
)
def test_an_error_outside_any_step_errors_the_instance_naming_no_failed_step(kind, error):
    inst = workflows.create("steps-test-raises", params=kind)
    run_until_idle()
    assert inst.status()["error"] == error
    assert Instance.objects.get(pk=inst.id).failed_step_key == ""


def test_a_steps_attempts_count_in_the_step_metrics_of_its_workflow():
    before = step_metrics("steps-test-fails-once")
    inst = workflows.create("steps-test-fails-once")
    run_until_idle()
    assert inst.status()["output"] == "ok"
    # Started, succeeded, failed, durations of successes and of failures.
    after = step_metrics("steps-test-fails-once")
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1, 1, 1]


def test_a_run_of_ordinary_steps_logs_no_warning(caplog):
    inst = workflows.create("steps-test-repeated-names")
    with caplog.at_level(logging.WARNING, logger="workflows"):
        run_until_idle()
    assert inst.status()["output"] == [0, 1, 2]
    assert caplog.messages == []  # e.g. no one-statement write tried where it cannot apply


def test_a_one_statement_write_that_fails_is_made_by_the_general_path_and_logged(monkeypatch, caplog):
    """On PostgreSQL an attempt's start and end are one statement each; one that fails (a
    dropped connection, say) is made again the general way. Played here on both databases."""
    from django.db import DatabaseError

    from workflows import attempt_sql

    def fails(*args):
        raise DatabaseError("connection dropped")

    monkeypatch.setattr(attempt_sql, "applies", lambda: True)
    monkeypatch.setattr(attempt_sql, "start", fails)
    monkeypatch.setattr(attempt_sql, "end", fails)
    inst = workflows.create("steps-test-fails-once")
    with caplog.at_level(logging.WARNING, logger="workflows.runtime"):
        run_until_idle()

    assert inst.status()["output"] == "ok"
    runs = StepRun.objects.filter(step__instance_id=inst.id).order_by("attempt")
    assert list(runs.values_list("attempt", "outcome")) == [(1, "failed"), (2, "succeeded")]
    assert caplog.messages == [f"run of {inst.id}: one-statement write failed; taking the general path"] * 4


@pytest.mark.postgres
def test_on_postgresql_an_attempts_start_and_end_take_one_statement_each(monkeypatch):
    """attempt_sql.py: the guard, the write and the lease in one round trip, not five or six."""
    from workflows import attempt_sql

    def statements_of_a_run() -> list[str]:
        inst = workflows.create("steps-test-repeated-names")  # three steps
        with CaptureQueriesContext(connection) as captured:
            run_instance(inst.id)
        assert inst.status()["output"] == [0, 1, 2]
        return [query["sql"] for query in captured]

    one_statement = statements_of_a_run()
    assert sum(sql.startswith("WITH held AS") for sql in one_statement) == 6  # each start and each end
    monkeypatch.setattr(attempt_sql, "applies", lambda: False)
    assert len(one_statement) < len(statements_of_a_run())
