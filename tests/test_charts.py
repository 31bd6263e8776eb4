"""The workflows page's charts: per workflow over the last 24 hours or 7 days, instances
started, completed and errored per hour, p50/p95 durations, compute against wall time,
and the slowest and most failing steps, all from SQL aggregates."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse

from workflows import charts
from workflows.models import Instance, Step, StepRun

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_hours_kept_from_another_test():
    cache.clear()


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
    for n in range(4):
        instance(f"i{n}", "billing", created=hour, lasted=timedelta(seconds=n + 1), status="complete")
    chart = by_name()["billing"]
    assert chart.peak == 4
    bar = next(bar for bar in chart.throughput_bars() if bar["hour"].started)
    assert bar["started_y"] == pytest.approx(0) and bar["started_h"] == pytest.approx(60)
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


def test_an_hour_that_has_ended_is_aggregated_once_and_the_current_hour_at_every_view():
    instance("a", "billing", created=NOW - timedelta(hours=2), lasted=timedelta(seconds=1))
    assert by_name()["billing"].started == 1
    # Rows cannot appear in a past hour in real life; here they show the figures are kept.
    instance("b", "billing", created=NOW - timedelta(hours=2), lasted=timedelta(seconds=1))
    instance("c", "billing", created=NOW - timedelta(minutes=10))  # the current hour
    assert by_name()["billing"].started == 2
    cache.clear()
    assert by_name()["billing"].started == 3
