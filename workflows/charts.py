"""The workflows page's charts: each workflow's health over the last 24 hours or 7 days.

- started, completed and errored instances per hour (by creation time; by end time);
- p50 and p95 of the time instances took from creation to their end, per hour;
- compute time (the attempts' durations added up) against wall time (creation to end)
  of the instances that ended in the window: what they cost against how long they took;
- the slowest steps (mean attempt duration) and the most failing ones (failed attempts).

The first three come per hour from hours.py: the hours that have closed are kept in
`WorkflowHour` by the timers, the current one is aggregated from the instances, so the
page costs about the same however many instances the window holds (bench/charts_bench.py:
1,000,000 instances on PostgreSQL). The last two read attempts, of which a window may hold
millions: they are measured on the latest SAMPLE (250) instances of each workflow that
ended in the window (all of them when fewer did), and the compute time of the window is
its wall time at the sample's share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, Sum

from . import hours
from .models import Instance, StepRun

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
TOP_STEPS = 5
SAMPLE = 250
BAR_PITCH = 10
CHART_HEIGHT = 60


@dataclass
class Hour:
    start: datetime
    started: int = 0
    completed: int = 0
    errored: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class StepFigure:
    name: str
    attempts: int
    failed: int
    mean_ms: float


@dataclass
class WorkflowHealth:
    workflow: str
    hours: list[Hour]
    wall_ms: float = 0.0  # creation to end, added up over the instances that ended in the window
    # The attempts are read for a sample: the latest SAMPLE instances that ended.
    sample_size: int = 0
    sample_compute_ms: float = 0.0
    sample_wall_ms: float = 0.0
    slowest: list[StepFigure] = field(default_factory=list)
    failing: list[StepFigure] = field(default_factory=list)

    @property
    def started(self) -> int:
        return sum(hour.started for hour in self.hours)

    @property
    def completed(self) -> int:
        return sum(hour.completed for hour in self.hours)

    @property
    def errored(self) -> int:
        return sum(hour.errored for hour in self.hours)

    @property
    def compute_percent(self) -> float:
        """Compute time as a share of wall time (measured on the sample)."""
        return 100 * self.sample_compute_ms / self.sample_wall_ms if self.sample_wall_ms else 0.0

    @property
    def compute_ms(self) -> float:
        """The window's compute time: its wall time at the sample's share."""
        return self.wall_ms * self.compute_percent / 100

    # Geometry for the template's SVGs: a viewBox CHART_HEIGHT high, BAR_PITCH per hour.

    @property
    def width(self) -> int:
        return BAR_PITCH * len(self.hours)

    @property
    def peak(self) -> int:
        return max([1, *(max(hour.started, hour.completed + hour.errored) for hour in self.hours)])

    def throughput_paths(self) -> dict[str, str]:
        """SVG path data of the bars, one path per series (a page of seven days draws
        hundreds of bars: one element each would cost the template more than the data):
        per hour, started as a thin pale bar, completed and errored stacked beside it."""
        scale = CHART_HEIGHT / self.peak
        paths: dict[str, list[str]] = {"started": [], "completed": [], "errored": []}

        def bar(series: str, x: int, width: int, bottom: float, height: float) -> None:
            if height:
                paths[series].append(f"M{x},{bottom - height:.2f}h{width}v{height:.2f}h-{width}z")

        for n, hour in enumerate(self.hours):
            x = n * BAR_PITCH
            bar("started", x, 4, CHART_HEIGHT, hour.started * scale)
            bar("completed", x + 4, 5, CHART_HEIGHT, hour.completed * scale)
            bar("errored", x + 4, 5, CHART_HEIGHT - hour.completed * scale, hour.errored * scale)
        return {series: "".join(parts) for series, parts in paths.items()}

    @property
    def slowest_p95_ms(self) -> float:
        return max([0.0, *(hour.p95_ms or 0.0 for hour in self.hours)])

    def duration_lines(self) -> dict[str, str]:
        """SVG polyline points of p50 and p95 per hour (hours with no ended instance skipped)."""
        top = self.slowest_p95_ms or 1.0
        lines = {}
        for name in ("p50_ms", "p95_ms"):
            points = [(n, getattr(hour, name)) for n, hour in enumerate(self.hours)]
            lines[name] = " ".join(
                f"{(n + 0.5) * BAR_PITCH:.1f},{CHART_HEIGHT * (1 - value / top):.1f}"
                for n, value in points
                if value is not None
            )
        return lines


def health(*, window: str, now: datetime) -> list[WorkflowHealth]:
    """Each workflow with instances in the window (`window`: "24h" or "7d"), by name."""
    since = hours.hour_of(now - WINDOWS[window]) + hours.HOUR
    starts = [since + n * hours.HOUR for n in range(int(WINDOWS[window] / hours.HOUR))]
    figures = hours.figures(begin=since, end=starts[-1] + hours.HOUR)
    charts: dict[str, WorkflowHealth] = {}
    for index, start in enumerate(starts):
        for workflow, hour in figures.get(start, {}).items():
            if workflow not in charts:
                charts[workflow] = WorkflowHealth(workflow, [Hour(each) for each in starts])
            chart = charts[workflow]
            chart.hours[index] = Hour(
                start, hour.started, hour.completed, hour.errored, hour.p50_ms, hour.p95_ms
            )
            chart.wall_ms += hour.wall_ms
    for chart in charts.values():
        _sample_steps(chart, since)
    return [charts[name] for name in sorted(charts)]


# An instance's wall time, creation to end.
Wall = ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())


def _sample_steps(chart: WorkflowHealth, since: datetime) -> None:
    """The cost and the step figures, from the attempts of the latest SAMPLE instances of
    the workflow that ended in the window: a bounded read (a window can hold millions of
    attempts), exact whenever fewer ended."""
    ended = Instance.objects.filter(workflow=chart.workflow, finished_at__gte=since)
    latest = ended.order_by("-finished_at")[:SAMPLE]  # a subquery of both queries below
    sample = latest.aggregate(size=Count("pk"), wall=Sum(Wall))
    chart.sample_size = sample["size"]
    chart.sample_wall_ms = sample["wall"].total_seconds() * 1000 if sample["wall"] else 0.0
    by_step = (
        StepRun.objects.filter(step__instance_id__in=latest.values("pk"))
        .order_by()
        .values("step__name")
        .annotate(
            attempts=Count("pk"),
            failed=Count("pk", filter=Q(outcome=StepRun.Outcome.FAILED)),
            mean=Avg("duration_ms"),
            compute=Sum("duration_ms"),
        )
    )
    steps = [
        StepFigure(row["step__name"], row["attempts"], row["failed"], row["mean"] or 0.0) for row in by_step
    ]
    chart.sample_compute_ms = sum(row["compute"] or 0.0 for row in by_step)
    chart.slowest = sorted(steps, key=lambda step: -step.mean_ms)[:TOP_STEPS]
    chart.failing = sorted((step for step in steps if step.failed), key=lambda step: -step.failed)[:TOP_STEPS]
