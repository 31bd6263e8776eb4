"""Replays are exact, whatever happens on the way (property-based, with hypothesis).

Hypothesis draws workflows as lists of steps (do, sleep, wait for an event, a step that
fails a few times, a step.map of a few parallel calls), run by one interpreter workflow,
and draws where workers crash and where runs are delivered twice. Each drawn workflow
runs twice: once with the crashes and extra deliveries, once without. Then:
- every step that succeeded ran its side effect exactly once;
- the instance ends as the uninterrupted run of the same list ends (status and output);
- while a run holds the instance, any other delivery of it is skipped, and a finished
  instance is held by nobody.

How a crash is simulated. The step function raises django-q2's TimeoutException, which
is what django-q2 raises in a worker to kill a task that overran. The engine lets it
through without writing anything, so the run unwinds as if its worker had died at
that point: the attempt is recorded as started, nothing after it is written, and the
instance stays `running` under a lease nobody renews. The test then plays the cluster:
the dead run's lease keeps other deliveries out until it runs out, and then the timers
(`advance`) recover the instance and run it again. A crash comes before the step's side
effect: a worker that dies after a side effect but before the engine records the step
repeats it (at-least-once is all any engine can promise there), which is not what this
test measures.
"""

from collections import Counter

import pytest
from django_q.exceptions import TimeoutException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workflows
from workflows import StepFailed, WaitTimeout, workflow
from workflows.models import Instance
from workflows.tasks import run_instance
from workflows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db

RETRIES = {"limit": 3, "delay": "10 seconds", "backoff": "constant"}  # four attempts in all
ALWAYS_FAILS = 4  # planned failures of a step that uses up its attempts
MAX_TURNS = 60

calls: Counter[tuple[str, int]] = Counter()  # every call of a step function
side_effects: Counter[tuple[str, int]] = Counter()  # calls that got past the crash point and returned
planned_failures: Counter[tuple[str, int]] = Counter()
duplicate_outcomes: list[str] = []  # what the deliveries made while a step ran returned


def enter_step(instance_id: str, index: int, crash: bool, deliver_again: bool) -> None:
    """What may happen to a step's first call before its side effect: django-q2 delivers
    the run again meanwhile, and then the worker dies."""
    key = (instance_id, index)
    calls[key] += 1
    if calls[key] > 1:
        return
    if deliver_again:
        duplicate_outcomes.append(run_instance(instance_id))
    if crash:
        raise TimeoutException("the worker died in the middle of this step")


def do_effect(instance_id: str, index: int, value: int, crash: bool, deliver_again: bool) -> int:
    enter_step(instance_id, index, crash, deliver_again)
    side_effects[(instance_id, index)] += 1
    return value


def fail_then_succeed(instance_id: str, index: int, failures: int, crash: bool, deliver_again: bool) -> str:
    enter_step(instance_id, index, crash, deliver_again)
    key = (instance_id, index)
    if planned_failures[key] < failures:
        planned_failures[key] += 1
        raise ValueError("planned failure")
    side_effects[key] += 1
    return "recovered"


@workflow("replay-property-interpreter")
def interpret(event, step):
    """Run the list of steps in event.payload["ops"]; return what each gave."""
    plan = event.payload
    results = []
    for index, (kind, arg) in enumerate(plan["ops"]):
        trouble = (step.instance_id, index, arg, index in plan["crash"], index in plan["deliver_again"])
        if kind == "do":
            results.append(step.do(f"do {index}", do_effect, *trouble, timeout="1 minute", retries=RETRIES))
        elif kind == "fail":
            try:
                results.append(
                    step.do(
                        f"flaky {index}", fail_then_succeed, *trouble, timeout="1 minute", retries=RETRIES
                    )
                )
            except StepFailed as exc:
                results.append(["failed", exc.error_type, exc.attempts])
        elif kind == "map":
            # A crash hits the first call; its other calls run meanwhile.
            results.append(
                step.map(
                    f"map {index}",
                    lambda call, index=index, crash=trouble[3]: do_effect(
                        step.instance_id, (index, call), call, crash and call == 0, False
                    ),
                    range(arg),
                    timeout="1 minute",
                    retries=RETRIES,
                )
            )
        elif kind == "sleep":
            step.sleep(f"sleep {index}", arg)
            results.append("slept")
        else:
            try:
                results.append(step.wait_for_event(f"wait {index}", type=f"event-{index}", timeout="2 hours"))
            except WaitTimeout:
                results.append("timed out")
    return results


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("do"), st.integers(0, 1000)),
        st.tuples(st.just("fail"), st.sampled_from([1, 2, ALWAYS_FAILS])),
        st.tuples(st.just("sleep"), st.sampled_from([0, 1, 3600])),
        st.tuples(st.just("map"), st.integers(0, 3)),
        # when the event is sent: before the wait is reached, when it waits, or never
        st.tuples(st.just("wait"), st.sampled_from(["early", "on time", "never"])),
    ),
    min_size=1,
    max_size=6,
).map(lambda ops: [list(op) for op in ops])


@st.composite
def scenarios(draw):
    ops = draw(OPS)
    steps = [index for index, (kind, _) in enumerate(ops) if kind in ("do", "fail")]
    some_steps = st.lists(st.sampled_from(steps), unique=True) if steps else st.just([])
    maps = [index for index, (kind, _) in enumerate(ops) if kind == "map"]
    some_maps = st.lists(st.sampled_from(maps), unique=True) if maps else st.just([])
    return {
        "ops": ops,
        "crash": draw(some_steps) + draw(some_maps),
        "deliver_again": draw(some_steps),
        # between turns of the cluster: an extra delivery of the run, or a pause and resume
        "between_turns": draw(st.lists(st.sampled_from([None, "deliver", "pause and resume"]), max_size=12)),
    }


def surviving_crashes(fn, *args) -> None:
    """Call fn as the cluster would: a worker dying in it does not stop the cluster."""
    try:
        fn(*args)
    except TimeoutException:
        pass


def assert_held_by_one_run_at_most(row: Instance) -> None:
    if row.lease_token:  # a run (here: one that died) holds it until its lease runs out
        assert row.status in ("running", "queued")
        assert row.lease_expires_at > workflows.now()
        assert run_instance(row.id) == "skipped"


def drive(instance_id: str, ops: list, between_turns: list) -> Instance:
    """Play the cluster and the people around the instance until it finishes."""
    inst = workflows.get(instance_id)
    for index, (kind, arg) in enumerate(ops):
        if kind == "wait" and arg == "early":
            inst.send_event(f"event-{index}", {"early": index})
    extra = iter(between_turns)
    for _ in range(MAX_TURNS):
        action = next(extra, None)
        if action == "deliver":
            surviving_crashes(run_instance, instance_id)
        elif action == "pause and resume" and Instance.objects.get(pk=instance_id).allows("pause"):
            inst.pause()
            inst.resume()
        surviving_crashes(run_until_idle)
        row = Instance.objects.get(pk=instance_id)
        assert_held_by_one_run_at_most(row)
        if row.is_finished:
            return row
        awaited = row.waiting_for.removeprefix("event-")
        if row.status == "waiting" and awaited and ops[int(awaited)][1] == "on time":
            inst.send_event(row.waiting_for, {"on time": int(awaited)})
        else:
            surviving_crashes(advance, "3 hours")  # every sleep, retry delay, deadline and dead lease is due
    raise AssertionError(f"instance {instance_id} did not finish in {MAX_TURNS} turns")


def steps_that_succeed(ops: list) -> list[int]:
    return [
        index
        for index, (kind, arg) in enumerate(ops)
        if kind == "do" or (kind == "fail" and arg < ALWAYS_FAILS)
    ]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_crashes_and_duplicate_deliveries_neither_repeat_a_step_nor_change_the_outcome(scenario):
    ops = scenario["ops"]
    duplicate_outcomes.clear()
    troubled = workflows.create(
        "replay-property-interpreter",
        params={"ops": ops, "crash": scenario["crash"], "deliver_again": scenario["deliver_again"]},
    )
    troubled_end = drive(troubled.id, ops, scenario["between_turns"])
    # Created once the first has finished: run_until_idle runs every runnable instance.
    smooth = workflows.create(
        "replay-property-interpreter", params={"ops": ops, "crash": [], "deliver_again": []}
    )
    smooth_end = drive(smooth.id, ops, [])

    assert duplicate_outcomes == ["skipped"] * len(scenario["deliver_again"])
    assert (troubled_end.status, troubled_end.output) == (smooth_end.status, smooth_end.output)
    assert smooth_end.status == "complete"
    for inst in (troubled, smooth):
        effects = {index: side_effects[(inst.id, index)] for index, _ in enumerate(ops)}
        succeeded = steps_that_succeed(ops)
        assert effects == {index: int(index in succeeded) for index, _ in enumerate(ops)}
        for index, (kind, arg) in enumerate(ops):
            if kind == "map":  # each parallel call's side effect once
                assert [side_effects[(inst.id, (index, call))] for call in range(arg)] == [1] * arg
    assert (troubled_end.lease_token, smooth_end.lease_token) == ("", "")
