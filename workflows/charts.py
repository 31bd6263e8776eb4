"""The workflows page's charts: each workflow's health over the last 24 hours or 7 days.

Every figure is a SQL aggregate over the window, grouped by workflow (and by hour), so
that one query answers for all the workflows at once and the page costs the same however
many instances the window holds beyond it (bench/charts_bench.py: 1,000,000 instances on
PostgreSQL). The percentiles are PostgreSQL's `percentile_cont`; SQLite has no such
aggregate, so there they are taken in Python from the window's durations (a SQLite
deployment is small).

- started, completed and errored instances per hour (by creation time; by end time);
- p50 and p95 of the time instances took from creation to their end, per hour;
- compute time (the attempts' durations added up) against wall time (creation to end)
  of the instances that ended in the window: what they cost against how long they took;
- the slowest steps (mean attempt duration) and the most failing ones (failed attempts).

An hour that has ended does not change: its figures are aggregated once and kept in
Django's cache (a view aggregates only the current hour and the hours it has not seen).
The last two read attempts, of which a window may hold millions: they are measured on the
latest SAMPLE (250) instances of each workflow that ended in the window (all of them when fewer
did), and the compute time of the window is its wall time at the sample's share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncHour

from .models import Instance, Status, StepRun

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
TOP_STEPS = 5
SAMPLE = 250
HOUR = timedelta(hours=1)
CACHE_SECONDS = 8 * 24 * 3600  # an hour's figures are kept as long as a window shows them
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

    def throughput_bars(self) -> list[dict]:
        """Per hour: started as a thin pale bar, completed and errored stacked beside it."""
        scale = CHART_HEIGHT / self.peak
        bars = []
        for n, hour in enumerate(self.hours):
            x = n * BAR_PITCH
            completed, errored = hour.completed * scale, hour.errored * scale
            bars.append(
                {
                    "hour": hour,
                    "x": x,
                    "started_y": CHART_HEIGHT - hour.started * scale,
                    "started_h": hour.started * scale,
                    "completed_y": CHART_HEIGHT - completed,
                    "completed_h": completed,
                    "errored_y": CHART_HEIGHT - completed - errored,
                    "errored_h": errored,
                }
            )
        return bars

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


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def health(*, window: str, now: datetime) -> list[WorkflowHealth]:
    """Each workflow with instances in the window (`window`: "24h" or "7d"), by name."""
    since = _hour(now - WINDOWS[window]) + timedelta(hours=1)
    starts = [since + timedelta(hours=n) for n in range(int(WINDOWS[window] / timedelta(hours=1)))]
    charts: dict[str, WorkflowHealth] = {}
    for index, (start, workflows) in enumerate(_hourly(starts, now).items()):
        for workflow, (started, completed, errored, p50, p95, wall_ms) in workflows.items():
            if workflow not in charts:
                charts[workflow] = WorkflowHealth(workflow, [Hour(each) for each in starts])
            chart = charts[workflow]
            chart.hours[index] = Hour(start, started, completed, errored, p50, p95)
            chart.wall_ms += wall_ms
    for chart in charts.values():
        _sample_steps(chart, since)
    return [charts[name] for name in sorted(charts)]


# {workflow: [started, completed, errored, p50 ms, p95 ms, wall ms]} of one hour.
HourFigures = dict[str, list]


def _hourly(starts: list[datetime], now: datetime) -> dict[datetime, HourFigures]:
    """The figures of each hour. An hour that has ended no longer changes (instances are
    created and finished at the time they are written): it is aggregated once and kept in
    Django's cache, so that a view aggregates only the current hour and the hours it has
    not seen yet."""
    closed = [start for start in starts if start + HOUR <= now]
    cached = cache.get_many([_cache_key(start) for start in closed])
    figures = {start: cached[_cache_key(start)] for start in closed if _cache_key(start) in cached}
    missing = [start for start in closed if start not in figures]
    if missing:
        computed = _aggregate(missing[0], missing[-1] + HOUR)
        fresh = {start: computed.get(start, {}) for start in missing}
        cache.set_many({_cache_key(start): value for start, value in fresh.items()}, CACHE_SECONDS)
        figures |= fresh
    current = [start for start in starts if start not in figures]
    if current:
        computed = _aggregate(current[0], current[-1] + HOUR)
        figures |= {start: computed.get(start, {}) for start in current}
    return {start: figures[start] for start in starts}


def _cache_key(start: datetime) -> str:
    return f"durable:charts:{connection.alias}:{connection.settings_dict['NAME']}:{start:%Y-%m-%dT%H}"


def _aggregate(begin: datetime, end: datetime) -> dict[datetime, HourFigures]:
    """The figures of each hour from `begin` to `end`, by two grouped queries."""
    hours: dict[datetime, HourFigures] = defaultdict(dict)

    def of(workflow: str, start: datetime) -> list:
        return hours[_hour(start)].setdefault(workflow, [0, 0, 0, None, None, 0.0])

    started = (
        Instance.objects.filter(created_at__gte=begin, created_at__lt=end)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("workflow", "hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in started:
        of(row["workflow"], row["hour"])[0] = row["n"]
    for workflow, start, completed, errored, p50, p95, wall_ms in _ended(begin, end):
        of(workflow, start)[1:] = [completed, errored, p50, p95, wall_ms]
    return hours


def _sample_steps(chart: WorkflowHealth, since: datetime) -> None:
    """The cost and the step figures, from the attempts of the latest SAMPLE instances of
    the workflow that ended in the window: a bounded read (a window can hold millions of
    attempts), exact whenever fewer ended."""
    latest = list(
        Instance.objects.filter(workflow=chart.workflow, finished_at__gte=since)
        .order_by("-finished_at")
        .values_list("id", "created_at", "finished_at")[:SAMPLE]
    )
    chart.sample_size = len(latest)
    chart.sample_wall_ms = sum((finished - created).total_seconds() * 1000 for _, created, finished in latest)
    by_step = (
        StepRun.objects.filter(step__instance_id__in=[instance_id for instance_id, _, _ in latest])
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


_ENDED_POSTGRESQL = """
    SELECT workflow, date_trunc('hour', finished_at) AS hour,
           count(*) FILTER (WHERE status = %(complete)s), count(*) FILTER (WHERE status = %(errored)s),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at)
               FILTER (WHERE status IN (%(complete)s, %(errored)s)),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY finished_at - created_at)
               FILTER (WHERE status IN (%(complete)s, %(errored)s)),
           sum(finished_at - created_at)
    FROM workflows_instance
    WHERE finished_at >= %(begin)s AND finished_at < %(end)s
    GROUP BY 1, 2
"""


def _ended(begin: datetime, end: datetime) -> list[tuple]:
    """(workflow, hour, completed, errored, p50 ms, p95 ms, wall ms) of the instances that
    ended in each hour: the counts and percentiles of those that ended by themselves
    (complete or errored), the wall time (creation to end) of all."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _ENDED_POSTGRESQL,
                {"complete": Status.COMPLETE, "errored": Status.ERRORED, "begin": begin, "end": end},
            )
            return [
                (workflow, hour, completed, errored, _ms(p50), _ms(p95), _ms(wall) or 0.0)
                for workflow, hour, completed, errored, p50, p95, wall in cursor.fetchall()
            ]
    groups: dict[tuple[str, datetime], list] = defaultdict(lambda: [0, 0, [], 0.0])
    rows = Instance.objects.filter(finished_at__gte=begin, finished_at__lt=end).order_by()
    for workflow, status, created, finished in rows.values_list(
        "workflow", "status", "created_at", "finished_at"
    ):
        group, length = groups[workflow, _hour(finished)], (finished - created).total_seconds() * 1000
        group[3] += length
        if status in (Status.COMPLETE, Status.ERRORED):
            group[0 if status == Status.COMPLETE else 1] += 1
            group[2].append(length)
    return [
        (workflow, hour, completed, errored, _percentile(lengths, 0.5), _percentile(lengths, 0.95), wall)
        for (workflow, hour), (completed, errored, lengths, wall) in groups.items()
    ]


def _ms(length: timedelta | None) -> float | None:
    return length.total_seconds() * 1000 if length is not None else None


def _percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
