"""The workflows page's figures kept up by the timers, so that the page reads a few
hundred small rows instead of aggregating a million instances (bench/charts_bench.py).

Two rollups, each with a mark saying how far it has gone (`RollupMark`):

- **hours** (hours.py): once an hour has closed, each workflow's started, completed and
  errored instances, p50/p95 of their durations and their wall time in that hour go into
  one `WorkflowHour` row. The charts read the rows of the hours before the mark and
  aggregate the hours after it (the current hour) from the instances.
- **counts** (counts.py): the instances that ended before the mark, by workflow and
  status, are added up into `FinishedCount`; the counts table adds the instances that
  have not ended (or ended after the mark), counted live.

Why the timers and not counters written as instances start and end: a counter per
workflow (and hour) is one row that every finishing instance of the workflow would lock,
a hundred workers at once; writing nothing more on the engine's path keeps a step's cost
where it was. The timers look about once a minute (timers.py), so a rollup costs one hour
of rows per hour and one minute of ends per minute. Because a rollup reads an hour's rows
once the hour has closed, it takes exact percentiles (PostgreSQL's `percentile_cont`, the
same in Python on SQLite), where counters added up one by one would need a histogram.

Each rollup is safe however it runs: late (it catches up from its mark), twice (the mark
has moved: nothing is left to do), or on two clusters at once (the mark's row is locked
while a rollup writes, and `WorkflowHour` is unique per workflow and hour). Times are the
times written on the rows (`created_at`, `finished_at`, by the engine's clock): a rollup
takes only what is older than GRACE, by which time the transaction that wrote it has
committed (so the hosts' clocks must agree within GRACE, as NTP keeps them).

What they show, as a consequence: the charts count starts and ends as events. An
instance that errored, was retried after its hour was rolled up and then completed is
one error in the first hour and one completion in a later one (a live aggregate of the
rows would show the completion only); a deleted instance stays in the hours it was
counted in. The counts by status, instead, are the instances as they are now: a retry,
a restart, a delete or the retention's purge takes an instance off the finished counts
(counts.forget) in its own transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection

from .models import RollupMark

GRACE = timedelta(minutes=5)


def mark(name: str) -> datetime | None:
    """How far the rollup `name` has gone (None: it never ran)."""
    return RollupMark.objects.filter(name=name).values_list("up_to", flat=True).first()


def locked_mark(name: str, *, start: datetime) -> RollupMark:
    """The rollup's mark, locked for the caller's transaction (created at `start` the first
    time): one rollup of each kind writes at a time."""
    RollupMark.objects.get_or_create(name=name, defaults={"up_to": start})
    return RollupMark.objects.select_for_update().get(name=name)


def shared_mark(name: str, *, start: datetime) -> datetime:
    """The rollup's mark (created at `start` the first time), held for the caller's
    transaction so that the rollup cannot move it meanwhile; others holding it too are not
    kept waiting."""
    RollupMark.objects.get_or_create(name=name, defaults={"up_to": start})
    table = connection.ops.quote_name(RollupMark._meta.db_table)
    share = " FOR SHARE" if connection.vendor == "postgresql" else ""  # SQLite has one writer
    held = RollupMark.objects.raw(f"SELECT name, up_to FROM {table} WHERE name = %s{share}", [name])
    return next(iter(held)).up_to
