"""Instances by workflow and status, as they are now, without counting a million rows.

An instance's status changes while it runs, but once it has ended it stays (complete,
errored, terminated) until a retry or a restart reopens it or it is deleted. So `settle`
(the timers, about once a minute) adds the instances that ended before its mark up into
`FinishedCount`, once each, and `by_workflow_and_status` counts the rest live: those
that have not ended (few, in a healthy deployment) and those that ended since the mark.
A retry, a restart and a delete take what they change off the settled counts in their
own transaction (`forget`). rollups.py says why the timers, and how a rollup stays right
when it runs late, twice or on two clusters.

Invariant: FinishedCount(workflow, status) = the instances of that workflow and status
whose `finished_at` is before the mark. Only `settle` moves the mark and adds, with the
mark's row locked; `forget` holds the mark (shared) while it decides which instances were
settled, so a settle cannot count an instance that a retry or a delete is changing
without that change taking it off again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection, transaction
from django.db.models import Count, F

from .models import UNFINISHED_STATUSES, FinishedCount, Instance
from .rollups import GRACE, locked_mark, mark, shared_mark

MARK = "counts"
# The mark before any settle: nothing has been added up.
NOTHING_SETTLED = datetime(1970, 1, 1, tzinfo=UTC)


def settle(*, now: datetime) -> int:
    """Add up the instances that ended between the mark and GRACE ago; returns how many."""
    up_to = now - GRACE
    if (mark(MARK) or NOTHING_SETTLED) >= up_to:
        return 0
    settled = 0
    with transaction.atomic():
        held = locked_mark(MARK, start=NOTHING_SETTLED)
        if held.up_to >= up_to:
            return 0  # another timer settled them meanwhile
        ended = (
            Instance.objects.filter(finished_at__gte=held.up_to, finished_at__lt=up_to)
            .values_list("workflow", "status")
            .annotate(n=Count("*"))
            .order_by("workflow", "status")
        )
        for workflow, status, how_many in ended:
            row, _ = FinishedCount.objects.get_or_create(workflow=workflow, status=status)
            FinishedCount.objects.filter(pk=row.pk).update(number=F("number") + how_many)
            settled += how_many
        held.up_to = up_to
        held.save(update_fields=["up_to"])
    return settled


def forget(instances: Iterable[tuple[str, str, datetime | None]]) -> None:
    """Instances (workflow, status, finished_at), locked in the caller's transaction, that
    leave their status (a retry, a restart) or are deleted: those settled are taken off."""
    ended = [(workflow, status, finished) for workflow, status, finished in instances if finished is not None]
    if not ended:
        return
    up_to = shared_mark(MARK, start=NOTHING_SETTLED)
    settled = Counter((workflow, status) for workflow, status, finished in ended if finished < up_to)
    for (workflow, status), how_many in sorted(settled.items()):  # in order: two deletes never deadlock
        FinishedCount.objects.filter(workflow=workflow, status=status).update(number=F("number") - how_many)


def by_workflow_and_status() -> list[tuple[str, str, int]]:
    """(workflow, status, how many) of every workflow and status with instances."""
    with connection.cursor() as cursor:
        cursor.execute(_WORKFLOWS)
        names = [name for (name,) in cursor.fetchall()]
        if not names:
            return []
        as_value = connection.ops.adapt_datetimefield_value
        cursor.execute(
            _COUNTS.format(
                names=", ".join(["%s"] * len(names)), unfinished=", ".join(["%s"] * len(UNFINISHED_STATUSES))
            ),
            [
                *names,
                *UNFINISHED_STATUSES,
                as_value(mark(MARK) or NOTHING_SETTLED),
                MARK,
                as_value(NOTHING_SETTLED),
            ],
        )
        return [(workflow, status, int(number)) for workflow, status, number in cursor.fetchall()]


# The workflows with instances, one step down the (workflow, status) index each (a
# DISTINCT would read the whole index on PostgreSQL).
_WORKFLOWS = """
    WITH RECURSIVE names(workflow) AS (
        SELECT * FROM (SELECT workflow FROM workflows_instance ORDER BY workflow LIMIT 1) AS first
        UNION ALL
        SELECT (
            SELECT workflow FROM workflows_instance AS later
            WHERE later.workflow > names.workflow ORDER BY later.workflow LIMIT 1
        ) FROM names WHERE names.workflow IS NOT NULL
    )
    SELECT workflow FROM names WHERE workflow IS NOT NULL
"""

# One statement, so that it sees the settled counts and the instances at one moment (two
# could fall on either side of a settle and count an instance twice or not at all). Live:
# the instances that have not ended, from the (workflow, status) index alone, and those
# that ended after the mark as this statement sees it. The mark read just before (never
# later than the statement's) bounds the range of the `finished_at` index to read, which
# a mark known only as the statement runs would not.
_COUNTS = """
    SELECT workflow, status, SUM(number) FROM (
        SELECT workflow, status, number FROM workflows_finishedcount
        UNION ALL
        SELECT workflow, status, COUNT(*) FROM workflows_instance
        WHERE workflow IN ({names}) AND status IN ({unfinished})
        GROUP BY workflow, status
        UNION ALL
        SELECT workflow, status, COUNT(*) FROM workflows_instance
        WHERE finished_at >= %s AND finished_at >= COALESCE(
            (SELECT up_to FROM workflows_rollupmark WHERE name = %s), %s
        )
        GROUP BY workflow, status
    ) AS counted
    GROUP BY workflow, status
    HAVING SUM(number) > 0
"""
