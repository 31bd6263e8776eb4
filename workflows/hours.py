"""Each workflow's figures per hour, for the charts: instances started (by creation time),
completed and errored (by end time), p50 and p95 of the time from creation to the end of
those that completed or errored, and the wall time (creation to end) of all that ended.

`aggregate` takes them from the instance rows: two grouped queries for any span of hours.
`roll_up` (the timers, about once a minute) keeps each hour that has closed in
`WorkflowHour`, once; `figures` reads the kept hours and aggregates only the others (the
current hour), rollups.py says why and what that means for a retried instance. The
percentiles are PostgreSQL's `percentile_cont`; SQLite has no such aggregate, so there
they are taken in Python from the hour's durations (a SQLite deployment is small).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncHour

from .models import Instance, Status, WorkflowHour
from .rollups import GRACE, locked_mark, mark

HOUR = timedelta(hours=1)
# The charts' longest window is 7 days: older hours are neither rolled up nor kept.
KEPT = timedelta(days=8)
# Hours rolled up in one transaction (a rollup catching up after days does it in steps).
CHUNK = 24
MARK = "hours"


@dataclass
class Figures:
    """One workflow's hour."""

    started: int = 0
    completed: int = 0
    errored: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    wall_ms: float = 0.0


FIGURES = [field.name for field in fields(Figures)]

# {hour start: {workflow: its figures}}, an hour without instances absent or empty.
Hours = dict[datetime, dict[str, Figures]]


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def figures(*, begin: datetime, end: datetime) -> Hours:
    """The hours from `begin` to `end` (whole hours): those rolled up from WorkflowHour,
    the rest aggregated from the instances."""
    rolled_up_to = min(mark(MARK) or begin, end)
    hours: Hours = defaultdict(dict)
    if begin < rolled_up_to:
        # Read after the mark: the rows of every hour before it were committed with it.
        kept = WorkflowHour.objects.filter(hour__gte=begin, hour__lt=rolled_up_to)
        for hour, workflow, *values in kept.values_list("hour", "workflow", *FIGURES):
            hours[hour][workflow] = Figures(*values)
    for start, workflows in aggregate(max(begin, rolled_up_to), end).items():
        hours[start] = workflows
    return hours


def roll_up(*, now: datetime) -> int:
    """Keep the figures of each hour that closed more than GRACE ago and is not kept yet
    (back to KEPT ago), and forget those older than KEPT; returns how many hours it kept."""
    closed = hour_of(now - GRACE)
    oldest = hour_of(now - KEPT)
    rolled = 0
    while True:
        # Aggregated before the lock, which is held for the writes only (on SQLite, the
        # lock of every writer); the mark says whether another timer did it meanwhile.
        seen = mark(MARK) or oldest
        begin = max(seen, oldest)
        end = min(closed, begin + CHUNK * HOUR)
        if begin >= end:
            return rolled
        computed = aggregate(begin, end)
        with transaction.atomic():
            held = locked_mark(MARK, start=oldest)
            if held.up_to != seen:
                continue  # another timer kept these hours meanwhile: look again
            _keep(computed)
            WorkflowHour.objects.filter(hour__lt=oldest).delete()
            held.up_to = end
            held.save(update_fields=["up_to"])
        rolled += int((end - begin) / HOUR)


def _keep(hours: Hours) -> None:
    rows = [
        WorkflowHour(workflow=workflow, hour=start, **vars(hour))
        for start, workflows in hours.items()
        for workflow, hour in workflows.items()
    ]
    # Unique per hour and workflow: a row written twice is written once.
    WorkflowHour.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["hour", "workflow"],
        update_fields=FIGURES,
    )


def aggregate(begin: datetime, end: datetime) -> Hours:
    """The figures of each hour from `begin` to `end` (whole hours), by two grouped queries
    over the instances."""
    hours: Hours = defaultdict(dict)
    if begin >= end:
        return hours

    def of(workflow: str, start: datetime) -> Figures:
        return hours[hour_of(start)].setdefault(workflow, Figures())

    started = (
        Instance.objects.filter(created_at__gte=begin, created_at__lt=end)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("workflow", "hour")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in started:
        of(row["workflow"], row["hour"]).started = row["n"]
    for workflow, start, *ended in _ended(begin, end):
        hour = of(workflow, start)
        hour.completed, hour.errored, hour.p50_ms, hour.p95_ms, hour.wall_ms = ended
    return hours


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
        group, length = groups[workflow, hour_of(finished)], (finished - created).total_seconds() * 1000
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
