"""The instance page's Gantt chart: where each step's attempts and waits fall on one time
axis, and how much of the instance's life was compute and how much was waiting.

Plain geometry, no drawing: positions are percentages of the axis, so the template draws
one SVG that stretches to any width while its text keeps its size (readable on a phone).
A row is a step (a parallel call has its own row, under its `parallel` step); a bar is an
attempt, coloured by its outcome; a wait (sleep, event, child, a parallel step waiting for
its calls) and a retry delay are hatched spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.urls import reverse

from .models import Instance, Step, StepKind, StepRun, StepStatus
from .templatetags.workflows_console import milliseconds as duration_text

ROLLBACK_PREFIX = "rollback "
# Bars shorter than this share of the axis are drawn this wide, so that none vanishes.
MIN_WIDTH = 0.3
ROW_HEIGHT = 30  # px: the step's name above its bar
AXIS_HEIGHT = 22

# Tick spacings to choose from (seconds): the first that gives at most 6 ticks.
_TICK_STEPS = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600,
    12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
]  # fmt: skip


@dataclass(frozen=True)
class Segment:
    kind: str  # "attempt" (class = its outcome), "wait", "delay" (before a retry), "marker"
    css: str
    x: float  # percent of the axis
    width: float
    title: str  # what a hover shows: times and duration


@dataclass
class Row:
    label: str
    kind: str
    status: str
    href: str  # the step in the list below, or a child instance's page
    depth: int  # 1 for a parallel call, under its group
    rollback: bool
    span: str  # the row's whole duration, shown at its right end
    segments: list[Segment] = field(default_factory=list)
    y: int = 0


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str  # SVG text-anchor: the last tick's label ends at the edge


@dataclass(frozen=True)
class Gantt:
    rows: list[Row]
    ticks: list[Tick]
    start: datetime
    end: datetime
    wall_ms: float
    busy_ms: float  # when at least one attempt ran (the union of the attempts' times)
    compute_ms: float  # the attempts' durations added up (parallel calls count each)
    height: int

    @property
    def waiting_ms(self) -> float:
        return max(self.wall_ms - self.busy_ms, 0.0)

    @property
    def busy_percent(self) -> float:
        return 100 * self.busy_ms / self.wall_ms if self.wall_ms else 0.0

    @property
    def waiting_percent(self) -> float:
        return 100 - self.busy_percent if self.wall_ms else 0.0


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def _ms(length: timedelta) -> float:
    return length.total_seconds() * 1000


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self.length_ms = max(_ms(end - start), 1.0)

    def segment(self, kind: str, css: str, begin: datetime, finish: datetime, what: str) -> Segment:
        finish = max(min(finish, self.end), begin)
        x = 100 * _ms(begin - self.start) / self.length_ms
        width = max(100 * _ms(finish - begin) / self.length_ms, MIN_WIDTH)
        title = f"{what}: {_clock(begin)} → {_clock(finish)}, {duration_text(_ms(finish - begin))}"
        return Segment(kind, css, min(x, 100 - MIN_WIDTH), min(width, 100 - min(x, 100 - MIN_WIDTH)), title)

    def ticks(self) -> list[Tick]:
        seconds = self.length_ms / 1000
        spacing = next((each for each in _TICK_STEPS if seconds / each <= 6), _TICK_STEPS[-1])
        count = int(seconds / spacing)
        ticks = [
            Tick(100 * n * spacing / seconds, "+" + duration_text(n * spacing * 1000), "middle")
            for n in range(1, count + 1)
            if n * spacing / seconds <= 0.92  # leave room for the label of the end
        ]
        return [Tick(0, "0", "start"), *ticks, Tick(100, duration_text(self.length_ms), "end")]


def _attempts(axis: _Axis, step: Step, runs: list[StepRun], now: datetime) -> list[Segment]:
    """Each attempt as a bar, and the delay before each retry as a hatched span."""
    segments = []
    previous_end = None
    for run in runs:
        if previous_end is not None and run.started_at > previous_end:
            segments.append(axis.segment("delay", "delay", previous_end, run.started_at, "retry delay"))
        end = run.ended_at or now
        segments.append(
            axis.segment("attempt", run.outcome, run.started_at, end, f"attempt {run.attempt} {run.outcome}")
        )
        previous_end = end
    if step.status == StepStatus.RETRYING and previous_end is not None:
        due = f"retry delay (next attempt at {_clock(step.wake_at)})" if step.wake_at else "retry delay"
        segments.append(axis.segment("delay", "delay", previous_end, now, due))
    return segments


_WAITS = {
    StepKind.SLEEP: "sleep",
    StepKind.WAIT: "waiting for an event",
    StepKind.CHILD: "waiting for the child instance",
    StepKind.PARALLEL: "waiting for the parallel calls",
}


def _row(axis: _Axis, step: Step, now: datetime, depth: int) -> Row:
    end = step.completed_at or now
    if step.kind == StepKind.CHILD and step.child_id:
        href = reverse("workflows:instance_detail", args=[step.child_id])
    else:
        href = f"#step-{step.pk}"
    row = Row(
        label=step.name,
        kind=step.kind,
        status=step.status,
        href=href,
        depth=depth,
        rollback=step.name.startswith(ROLLBACK_PREFIX),
        span=duration_text(_ms(end - step.created_at)),
    )
    runs = list(step.runs.all())
    if step.kind in _WAITS:
        what = _WAITS[StepKind(step.kind)]
        if step.kind == StepKind.WAIT and step.event_type:
            what = f'waiting for event "{step.event_type}"'
        row.segments.append(axis.segment("wait", f"wait {step.kind}", step.created_at, end, what))
    elif step.kind == StepKind.PATCH:
        row.segments.append(
            axis.segment("marker", "marker", step.created_at, step.created_at, "patched here")
        )
        row.span = ""
    else:
        if step.status == StepStatus.QUEUED or (runs and runs[0].started_at > step.created_at):
            first = runs[0].started_at if runs else now
            row.segments.append(
                axis.segment("wait", "wait queued", step.created_at, first, "waiting for a worker")
            )
        row.segments.extend(_attempts(axis, step, runs, now))
        if runs:
            row.span = duration_text(
                sum(run.duration_ms or _ms((run.ended_at or now) - run.started_at) for run in runs)
            )
    return row


def _busy_ms(intervals: list[tuple[datetime, datetime]]) -> float:
    """The length of the union of the intervals."""
    total, reach = 0.0, None
    for begin, finish in sorted(intervals):
        if reach is None or begin > reach:
            total += _ms(finish - begin)
            reach = finish
        elif finish > reach:
            total += _ms(finish - reach)
            reach = finish
    return total


def build(*, instance: Instance, steps: list[Step], now: datetime) -> Gantt:
    """The chart of `instance`, from its timeline's steps (a parallel step's calls in
    `.members`, each step's attempts prefetched as `runs`)."""
    everything = [(step, 0) for step in steps]
    ordered: list[tuple[Step, int]] = []
    for step, depth in everything:
        ordered.append((step, depth))
        ordered.extend((call, 1) for call in getattr(step, "members", []))
    end = instance.finished_at or now
    runs = [run for step, _ in ordered for run in step.runs.all()]
    start = min([instance.created_at, *(step.created_at for step, _ in ordered)])
    end = max([end, *(run.ended_at for run in runs if run.ended_at)])
    axis = _Axis(start, end)
    rows = [_row(axis, step, now, depth) for step, depth in ordered]
    for n, row in enumerate(rows):
        row.y = AXIS_HEIGHT + n * ROW_HEIGHT
    intervals = [(run.started_at, min(run.ended_at or now, end)) for run in runs]
    return Gantt(
        rows=rows,
        ticks=axis.ticks(),
        start=start,
        end=end,
        wall_ms=_ms(end - start),
        busy_ms=_busy_ms(intervals),
        compute_ms=sum(run.duration_ms or 0 for run in runs),
        height=AXIS_HEIGHT + len(rows) * ROW_HEIGHT + 4,
    )
