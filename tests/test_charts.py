"""The workflows page's charts: per workflow over the last 24 hours or 7 days, instances
started, completed and errored per hour, p50/p95 durations, compute against wall time,
and the slowest and most failing steps, all from SQL aggregates."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.urls import reverse

import workflows
from support import backend_pid, is_blocked
from workflows import NonRetryableError, charts, clock, hours, workflow
from workflows.models import Instance, RollupMark, Step, StepRun, WorkflowHour
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


def instance(
    name: str, workflow: str, *, created: datetime, lasted: timedelta | None = None, status: str = "complete"
) -> Instance:
    return Instance.objects.create(
        id=name,
        workflow=workflow,
        status=status if lasted is not None else "running",
        created_at=created,
        updated_at=created,
        finished_at=created + lasted if lasted is not None else None,
    )


def attempts(owner: Instance, step: str, *durations_and_outcomes: tuple[float, str]) -> None:
    row = Step.objects.create(
        instance=owner, generation=1, key=f"{step}#0", name=step, kind="do", status="succeeded",
        created_at=owner.created_at,
    )  # fmt: skip
    for attempt, (ms, outcome) in enumerate(durations_and_outcomes, start=1):
        StepRun.objects.create(
            step=row, attempt=attempt, outcome=outcome, started_at=owner.created_at,
            ended_at=owner.created_at + timedelta(milliseconds=ms), duration_ms=ms,
        )  # fmt: skip


def by_name(window: str = "24h") -> dict[str, charts.WorkflowHealth]:
    return {chart.workflow: chart for chart in charts.health(window=window, now=NOW)}


def test_instances_are_counted_in_the_hour_they_started_and_the_hour_they_ended():
    hour = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    instance("a", "billing", created=hour + timedelta(minutes=5), lasted=timedelta(minutes=70))
    instance(
        "b", "billing", created=hour + timedelta(minutes=50), lasted=timedelta(minutes=1), status="errored"
    )
    instance("c", "billing", created=hour + timedelta(minutes=55))  # still running
    chart = by_name()["billing"]
    hours = {each.start: each for each in chart.hours}
    assert len(chart.hours) == 24 and chart.hours[-1].start == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert hours[hour].started == 3
    assert (hours[hour].completed, hours[hour].errored) == (0, 1)
    assert hours[hour + timedelta(hours=1)].completed == 1
    assert (chart.started, chart.completed, chart.errored) == (3, 1, 1)


def test_instances_before_the_window_are_left_out():
    instance("old", "billing", created=NOW - timedelta(hours=30), lasted=timedelta(hours=1))
    assert "billing" not in by_name()
    assert by_name("7d")["billing"].started == 1
    assert len(by_name("7d")["billing"].hours) == 7 * 24


def test_p50_and_p95_of_the_durations_per_hour():
    hour = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for n in range(1, 101):  # 1 s .. 100 s, all ending in the 09:00 hour
        instance(f"i{n}", "reports", created=hour, lasted=timedelta(seconds=n))
    [ended] = [each for each in by_name()["reports"].hours if each.completed]
    assert ended.completed == 100
    assert ended.p50_ms == pytest.approx(50_500)
    assert ended.p95_ms == pytest.approx(95_050)


def test_compute_time_is_set_against_wall_time():
    a = instance("a", "billing", created=NOW - timedelta(hours=2), lasted=timedelta(seconds=10))
    b = instance("b", "billing", created=NOW - timedelta(hours=2), lasted=timedelta(seconds=30))
    attempts(a, "charge", (500, "failed"), (1500, "succeeded"))
    attempts(b, "charge", (1000, "succeeded"))
    chart = by_name()["billing"]
    assert chart.compute_ms == pytest.approx(3000)
    assert chart.wall_ms == pytest.approx(40_000)
    assert chart.compute_percent == pytest.approx(7.5)


def test_the_slowest_and_the_most_failing_steps():
    owner = instance("a", "billing", created=NOW - timedelta(hours=1), lasted=timedelta(minutes=5))
    attempts(owner, "load", (10, "succeeded"))
    attempts(owner, "charge", (300, "failed"), (300, "failed"), (300, "succeeded"))
    attempts(owner, "render", (900, "succeeded"))
    attempts(owner, "mail", (50, "failed"), (50, "succeeded"))
    chart = by_name()["billing"]
    assert [step.name for step in chart.slowest] == ["render", "charge", "mail", "load"]
    assert [(step.name, step.failed, step.attempts) for step in chart.failing] == [
        ("charge", 2, 3),
        ("mail", 1, 2),
    ]


def test_the_geometry_fits_the_chart():
    hour = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    for n, status in enumerate(["complete", "complete", "complete", "errored"]):
        instance(f"i{n}", "billing", created=hour, lasted=timedelta(seconds=n + 1), status=status)
    chart = by_name()["billing"]
    assert chart.peak == 4
    # The 11:00 hour is the 23rd of the window: x = 220. 4 started fill the chart's 60
    # high; 3 completed stand 45 high beside them, the errored one 15 on top of those.
    assert chart.throughput_paths() == {
        "started": "M220,0.00h4v60.00h-4z",
        "completed": "M224,15.00h5v45.00h-5z",
        "errored": "M224,0.00h5v15.00h-5z",
    }
    points = chart.duration_lines()["p95_ms"].split()
    assert len(points) == 1 and float(points[0].split(",")[1]) == pytest.approx(0)


def test_the_workflows_page_draws_the_charts_with_text_alternatives(viewer):
    owner = instance(
        "a", "billing", created=datetime.now(UTC) - timedelta(hours=1), lasted=timedelta(seconds=5)
    )
    attempts(owner, "charge", (100, "failed"), (200, "succeeded"))
    html = viewer.get(reverse("workflows:workflow_list")).content.decode()
    assert "billing: instances per hour</title>" in html
    assert "1 started, 1 completed and 0 errored in the window" in html
    assert "billing: p50 and p95 duration per hour</title>" in html
    assert "billing: compute is" in html
    assert "Slowest steps" in html and "1 failed" in html
    week = viewer.get(reverse("workflows:workflow_list") + "?window=7d").content.decode()
    assert 'viewBox="0 0 1680 60"' in week  # 168 hours


def test_an_unknown_window_says_so_and_shows_the_last_24_hours(viewer):
    response = viewer.get(reverse("workflows:workflow_list") + "?window=1y")
    assert response.status_code == 200
    assert "No window &#x27;1y&#x27;" in response.content.decode()
    assert response.context["window"] == "24h"


def test_attempts_are_read_for_the_latest_instances_that_ended_and_the_share_scales_to_the_window(
    monkeypatch,
):
    monkeypatch.setattr(charts, "SAMPLE", 2)
    for n, seconds in enumerate((100, 10, 10)):  # the oldest one is left out of the sample
        owner = instance(
            f"i{n}", "billing", created=NOW - timedelta(hours=3 - n), lasted=timedelta(seconds=seconds)
        )
        attempts(owner, "slow step" if n == 0 else "step", (1000, "succeeded"))
    chart = by_name()["billing"]
    assert chart.sample_size == 2
    assert chart.compute_percent == pytest.approx(10)  # 2 s of 20 s
    assert chart.compute_ms == pytest.approx(12_000)  # 10% of the window's 120 s
    assert [step.name for step in chart.slowest] == ["step"]


# --- the hours kept by the timers (hours.roll_up) ---------------------------------------

WEEK_BEGIN = hours.hour_of(NOW - timedelta(days=7))
WEEK_END = hours.hour_of(NOW) + hours.HOUR


def a_busy_week() -> None:
    """Instances of three workflows over the last eight days: every status, durations from
    a second to hours, instances that end in a later hour than they started."""
    statuses = ["complete", "complete", "errored", "terminated", "complete", None]
    for n in range(300):
        created = NOW - timedelta(minutes=37 * n + 3)
        status = statuses[n % len(statuses)]
        lasted = timedelta(seconds=1 + (n * 7919) % 9000) if status else None
        workflow = ["billing", "reports", "onboarding"][n % 3]
        instance(f"i{n}", workflow, created=created, lasted=lasted, status=status or "running")


def kept(begin: datetime = WEEK_BEGIN, end: datetime = WEEK_END) -> dict:
    return {start: workflows for start, workflows in hours.figures(begin=begin, end=end).items() if workflows}


def live(begin: datetime = WEEK_BEGIN, end: datetime = WEEK_END) -> dict:
    return {start: workflows for start, workflows in hours.aggregate(begin, end).items() if workflows}


def test_the_kept_hours_show_what_a_live_aggregate_of_their_instances_shows():
    a_busy_week()
    before = live()
    week = by_name("7d")
    assert hours.roll_up(now=NOW) == 8 * 24  # every closed hour back to the longest window and a day
    assert WorkflowHour.objects.exists()
    assert RollupMark.objects.get(name="hours").up_to == hours.hour_of(NOW)
    assert kept() == before
    assert by_name("7d") == week


def test_an_hour_rolled_up_twice_is_kept_once_with_the_same_figures():
    a_busy_week()
    hours.roll_up(now=NOW)
    rows = list(WorkflowHour.objects.order_by("hour", "workflow").values())
    assert hours.roll_up(now=NOW) == 0  # the mark has moved: nothing is left to do
    # As a second cluster would, having read the mark before the first one moved it.
    RollupMark.objects.filter(name="hours").update(up_to=hours.hour_of(NOW) - timedelta(days=3))
    assert hours.roll_up(now=NOW) == 3 * 24
    assert list(WorkflowHour.objects.order_by("hour", "workflow").values()) == rows


def test_a_late_rollup_keeps_every_hour_it_missed_and_forgets_those_no_window_shows():
    a_busy_week()
    hours.roll_up(now=NOW - timedelta(days=2))
    later = NOW + timedelta(days=1)
    assert hours.roll_up(now=later) == 3 * 24
    assert kept(WEEK_BEGIN, WEEK_END) == live(WEEK_BEGIN, WEEK_END)
    oldest = WorkflowHour.objects.order_by("hour").first().hour
    assert oldest >= hours.hour_of(later - hours.KEPT)


def test_the_current_hour_and_an_hour_closed_less_than_the_grace_ago_are_aggregated_live():
    now = datetime(2026, 12, 1, 12, 3, tzinfo=UTC)  # 11:00-12:00 closed 3 minutes ago
    instance(
        "early", "billing", created=datetime(2026, 12, 1, 10, 10, tzinfo=UTC), lasted=timedelta(seconds=1)
    )
    hours.roll_up(now=now)
    assert RollupMark.objects.get(name="hours").up_to == datetime(2026, 12, 1, 11, tzinfo=UTC)
    instance(
        "late", "billing", created=datetime(2026, 12, 1, 11, 59, tzinfo=UTC), lasted=timedelta(minutes=2)
    )
    instance("now", "billing", created=now, lasted=timedelta(seconds=1))
    started = {hour.start.hour: hour.started for hour in charts.health(window="24h", now=now)[0].hours}
    assert (started[10], started[11], started[12]) == (1, 1, 1)
    # A row written into an hour already kept is not seen (the engine writes none: an
    # instance's times are the times it is written, GRACE before its hour is kept).
    instance("backdated", "billing", created=datetime(2026, 12, 1, 10, 20, tzinfo=UTC))
    assert charts.health(window="24h", now=now)[0].started == 3


def declined(instance_id: str) -> str:
    if not Instance.objects.filter(pk=instance_id, params__fixed=True).exists():
        raise NonRetryableError("the card was declined")
    return "charged"


@workflow("charts-test-charge")
def charge_flow(event, step):
    return step.do("charge", declined, event.instance_id)


def test_an_instance_retried_after_its_hour_was_kept_counts_as_an_error_then_a_completion():
    inst = workflows.create("charts-test-charge", id="card")
    run_until_idle()
    clock.shift(timedelta(hours=2))
    hours.roll_up(now=clock.now())  # the hour it errored in is kept with its error
    Instance.objects.filter(pk="card").update(params={"fixed": True})
    inst.retry()
    run_until_idle()
    [chart] = charts.health(window="24h", now=clock.now())
    # The charts count ends as events: it errored, then completed two hours later.
    assert (chart.started, chart.errored, chart.completed) == (1, 1, 1)
    assert [hour.errored for hour in chart.hours][-3] == 1 and chart.hours[-1].completed == 1
    # A live aggregate of the rows sees the instance as it is now: complete.
    since = chart.hours[0].start
    ended = live(since, since + 24 * hours.HOUR)
    assert sum(f.errored for hour in ended.values() for f in hour.values()) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_timers_rolling_up_at_once_keep_each_hour_once():
    a_busy_week()
    before = live()
    holding, go_on = threading.Event(), threading.Event()
    rolled: dict[str, int] = {}

    def first() -> None:
        with transaction.atomic():  # its lock on the mark is held until this commits
            rolled["first"] = hours.roll_up(now=NOW)
            holding.set()
            go_on.wait(10)
        connection.close()

    def second() -> None:
        rolled["pid"] = backend_pid()
        rolled["second"] = hours.roll_up(now=NOW)
        connection.close()

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert holding.wait(10)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    deadline = time.monotonic() + 10
    while not rolled.get("pid") or not is_blocked(rolled["pid"]):
        assert time.monotonic() < deadline, "the second rollup never waited for the first"
        time.sleep(0.02)
    go_on.set()
    for thread in threads:
        thread.join(10)
    assert (rolled["first"], rolled["second"]) == (8 * 24, 0)
    assert kept() == before
