"""The instance page's Gantt chart: a row per step on one time axis, a bar per attempt,
hatched waits and retry delays, parallel calls on rows of their own, and the share of the
instance's life spent computing and waiting."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

import workflows
from workflows import NonRetryableError, clock, workflow
from workflows.gantt import Gantt, build
from workflows.models import Instance, Step, StepRun
from workflows.selectors import instance_timeline
from workflows.testing import advance, reset_clock, run_until_idle

pytestmark = pytest.mark.django_db

FLAKY = {"failures": 0}


def flaky() -> str:
    if FLAKY["failures"]:
        FLAKY["failures"] -= 1
        raise RuntimeError("not yet")
    return "done"


def double(n: int) -> int:
    return 2 * n


@workflow("gantt-test-mixed")
def mixed(event, step):
    step.do("prepare", lambda: "ready")
    step.sleep("cool-off", "1 hour")
    step.do("flaky", flaky, retries={"limit": 3, "delay": "1 minute", "backoff": "constant"})
    step.map("double", double, [1, 2, 3])
    return step.wait_for_event("approval", type="approval", timeout="1 day")


@workflow("gantt-test-fails")
def fails(event, step):
    step.do("charge", lambda: (_ for _ in ()).throw(NonRetryableError("declined")))


@pytest.fixture(autouse=True)
def _real_clock():
    FLAKY["failures"] = 0
    yield
    reset_clock()


def chart(instance_id: str) -> Gantt:
    instance = Instance.objects.get(pk=instance_id)
    return build(instance=instance, steps=instance_timeline(instance=instance).steps, now=clock.now())


def test_each_step_has_a_row_and_each_attempt_a_bar_coloured_by_its_outcome():
    FLAKY["failures"] = 2
    workflows.create("gantt-test-mixed", id="mixed-1")
    run_until_idle()
    advance("1 hour")
    advance("1 minute")
    advance("1 minute")

    gantt = chart("mixed-1")
    rows = {row.label: row for row in gantt.rows}
    assert list(rows) == [
        "prepare",
        "cool-off",
        "flaky",
        "double",
        "double[0]",
        "double[1]",
        "double[2]",
        "approval",
    ]
    flaky_bars = [(segment.kind, segment.css) for segment in rows["flaky"].segments]
    assert flaky_bars == [
        ("attempt", "failed"),
        ("delay", "delay"),
        ("attempt", "failed"),
        ("delay", "delay"),
        ("attempt", "succeeded"),
    ]
    assert [segment.kind for segment in rows["cool-off"].segments] == ["wait"]
    assert rows["approval"].segments[0].title.startswith('waiting for event "approval"')
    assert rows["double"].segments[0].title.startswith("waiting for the parallel calls")


def test_parallel_calls_have_rows_of_their_own_under_their_step():
    workflows.create("gantt-test-mixed", id="mixed-2")
    run_until_idle()
    advance("1 hour")
    gantt = chart("mixed-2")
    depths = {row.label: row.depth for row in gantt.rows}
    assert depths["double"] == 0
    assert [depths[f"double[{n}]"] for n in range(3)] == [1, 1, 1]
    assert all(row.segments[-1].css == "succeeded" for row in gantt.rows if row.depth)


def test_positions_follow_the_time_axis_from_creation_to_now():
    workflows.create("gantt-test-mixed", id="mixed-3")
    run_until_idle()
    advance("1 hour")
    advance("1 hour")  # waits for the approval for an hour more
    gantt = chart("mixed-3")
    rows = {row.label: row for row in gantt.rows}
    sleep = rows["cool-off"].segments[0]
    assert sleep.x == pytest.approx(0, abs=0.5)
    assert sleep.width == pytest.approx(50, abs=0.5)  # one hour of two
    approval = rows["approval"].segments[0]
    assert approval.x + approval.width == pytest.approx(100, abs=0.01)  # still open: up to now
    for row in gantt.rows:
        for segment in row.segments:
            assert 0 <= segment.x and segment.x + segment.width <= 100.001


def test_the_ratio_says_how_much_of_the_life_was_compute_and_how_much_waiting():
    workflows.create("gantt-test-mixed", id="mixed-4")
    run_until_idle()
    advance("1 hour")
    advance("1 hour")
    gantt = chart("mixed-4")
    assert gantt.wall_ms == pytest.approx(2 * 3600 * 1000, rel=0.01)
    assert gantt.busy_ms < 60_000  # the steps took milliseconds; the rest was waiting
    assert gantt.waiting_percent > 99
    assert gantt.busy_percent + gantt.waiting_percent == pytest.approx(100)
    runs = StepRun.objects.filter(step__instance_id="mixed-4")
    assert gantt.compute_ms == pytest.approx(sum(run.duration_ms for run in runs))


def test_overlapping_attempts_count_once_in_the_time_spent_computing():
    workflows.create("gantt-test-mixed", id="mixed-5")
    run_until_idle()
    advance("1 hour")
    runs = StepRun.objects.filter(step__instance_id="mixed-5", step__name__startswith="double[")
    start = Step.objects.get(instance_id="mixed-5", name="double").created_at
    runs.update(started_at=start, ended_at=start + timedelta(seconds=10), duration_ms=10_000)
    gantt = chart("mixed-5")
    assert gantt.compute_ms >= 30_000  # three calls of 10 s each
    assert gantt.busy_ms < gantt.compute_ms - 19_000  # but they ran side by side


def test_the_axis_has_a_few_ticks_labelled_from_zero_to_the_whole_length():
    workflows.create("gantt-test-mixed", id="mixed-6")
    run_until_idle()
    advance("1 hour")
    advance("1 hour")
    ticks = chart("mixed-6").ticks
    assert ticks[0].label == "0" and ticks[-1].label == "2 h 0 min"
    assert 3 <= len(ticks) <= 8
    assert [tick.x for tick in ticks] == sorted(tick.x for tick in ticks)


def test_the_instance_page_draws_the_chart_above_the_steps_with_a_text_alternative(viewer):
    FLAKY["failures"] = 1
    workflows.create("gantt-test-mixed", id="mixed-7")
    run_until_idle()
    advance("1 hour")
    html = viewer.get(reverse("workflows:instance_detail", args=["mixed-7"])).content.decode()
    assert html.index('<figure class="gantt"') < html.index('<ol class="timeline">')
    assert '<title id="gantt-title">' in html and '<desc id="gantt-desc">' in html
    assert "Computing" in html and "Waiting" in html
    assert 'class="delay delay"' in html  # the retry delay, hatched
    assert 'class="attempt failed"' in html and 'class="attempt succeeded"' in html
    # Each row links to its step in the list, which has that id.
    for step_id in re.findall(r'<a href="#step-(\d+)" class="row', html):
        assert f'id="step-{step_id}"' in html


def test_a_child_step_row_links_to_the_child_instance(viewer):
    @workflow("gantt-test-parent")
    def parent(event, step):
        return step.run_workflow("child", "gantt-test-fails", id="gantt-child")

    workflows.create("gantt-test-parent", id="gantt-parent")
    run_until_idle()
    html = viewer.get(reverse("workflows:instance_detail", args=["gantt-parent"])).content.decode()
    assert f'<a href="{reverse("workflows:instance_detail", args=["gantt-child"])}" class="row child' in html


def test_rollback_steps_are_marked(viewer):
    @workflow("gantt-test-rollback")
    def with_rollback(event, step):
        step.do("reserve", lambda: "r1", rollback=lambda result: None)
        step.wait_for_event("go", type="go")

    inst = workflows.create("gantt-test-rollback", id="rb-1")
    run_until_idle()
    inst.terminate(rollback=True)
    run_until_idle()
    html = viewer.get(reverse("workflows:instance_detail", args=["rb-1"])).content.decode()
    assert 'class="row do succeeded rollback"' in html
    assert '<span class="badge rollback">rollback</span>' in html


def test_a_poll_of_a_running_instance_is_not_redrawn_only_because_time_passed(viewer):
    workflows.create("gantt-test-mixed", id="mixed-8")
    run_until_idle()  # sleeping: its wait grows with the clock
    url = reverse("workflows:instance_detail", args=["mixed-8"])
    first = viewer.get(url)
    seen = re.search(r'"X-Durable-Seen": "(\w+)"', first.content.decode()).group(1)
    advance("1 minute")
    poll = viewer.get(
        url, headers={"HX-Request": "true", "HX-Target": "instance-live", "X-Durable-Seen": seen}
    )
    assert poll.status_code == 204


def test_five_hundred_steps_draw_five_hundred_rows_in_one_scrolling_chart(viewer):
    inst = workflows.create("gantt-test-fails", id="many-1")
    run_until_idle()
    instance = Instance.objects.get(pk=inst.id)
    start = instance.created_at
    steps = Step.objects.bulk_create(
        Step(instance=instance, generation=instance.generation, key=f"step {n}#0", name=f"step {n}",
             kind="do", status="succeeded", attempts=1, created_at=start + timedelta(seconds=n),
             completed_at=start + timedelta(seconds=n + 1))
        for n in range(500)
    )  # fmt: skip
    StepRun.objects.bulk_create(
        StepRun(step=step, attempt=1, outcome="succeeded", started_at=step.created_at,
                ended_at=step.completed_at, duration_ms=1000)
        for step in steps
    )  # fmt: skip
    html = viewer.get(reverse("workflows:instance_detail", args=["many-1"])).content.decode()
    assert html.count('class="row do succeeded"') == 500
    assert 'class="gantt-scroll" tabindex="0" role="region"' in html


def test_the_template_comments_of_the_live_parts_are_not_shown_on_the_page(viewer):
    workflows.create("gantt-test-mixed", id="mixed-9")
    run_until_idle()
    html = viewer.get(reverse("workflows:instance_detail", args=["mixed-9"])).content.decode()
    assert "{#" not in html and "#}" not in html
    assert "{#" not in viewer.get(reverse("workflows:instance_list")).content.decode()
