"""Cron schedules: `@workflow(name, schedule="0 3 * * *")` starts one instance at each
due time, however many clusters run.

Every worker's timer looks at each tick (DURABLE_TIMER_INTERVAL). A due time is claimed by
one atomic update of the workflow's `Schedule` row (`last_due` moved forward only if it
was earlier), in the transaction that creates the instance, whose id names the due time
(`nightly-billing@2026-12-01T03:00Z`): a second claim changes nothing, and a second
create would be refused. Only the latest due time counts: times missed while no cluster
ran are not replayed one by one, and a schedule seen for the first time starts at its
next due time, not at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter
from django.db import transaction

from . import clock
from .conf import schedules_enabled
from .creation import create_one
from .definition import registered_workflows, workflow_options
from .errors import InstanceExists
from .models import Schedule

# Per process: the due time each schedule was last looked at, so a tick costs no query
# until a schedule's next due time comes.
_looked_at: dict[str, datetime] = {}


def scheduled() -> dict[str, str]:
    """{workflow name: cron expression} of the registered scheduled workflows."""
    options = {name: workflow_options(name).schedule for name in registered_workflows()}
    return {name: expression for name, expression in options.items() if expression}


def latest_due(expression: str, now: datetime) -> datetime:
    """The latest due time at or before `now` (cron times are whole minutes)."""
    after = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    return croniter(expression, after).get_prev(datetime)


def next_due(expression: str, now: datetime) -> datetime:
    return croniter(expression, now.astimezone(UTC)).get_next(datetime)


def instance_id(name: str, due: datetime) -> str:
    return f"{name}@{due:%Y-%m-%dT%H:%MZ}"


def start_due(*, now: datetime | None = None, remember: bool = True) -> int:
    """Start the scheduled workflows whose due time has come; returns how many started.
    `remember=False` looks in the database at every call (workflows.testing)."""
    if not schedules_enabled():
        return 0
    now = now or clock.now()
    started = 0
    for name, expression in scheduled().items():
        due = latest_due(expression, now)
        if remember and _looked_at.get(name) == due:
            continue
        started += _start_once(name, due)
        _looked_at[name] = due
    return started


def _start_once(name: str, due: datetime) -> int:
    with transaction.atomic():
        row, created = Schedule.objects.get_or_create(workflow=name, defaults={"last_due": due})
        if created:
            return 0  # first seen: it starts at its next due time
        if not Schedule.objects.filter(workflow=name, last_due__lt=due).update(last_due=due):
            return 0  # started by another timer, or not due yet
        try:
            create_one(
                workflow=name,
                params={"scheduled_at": due.isoformat().replace("+00:00", "Z")},
                instance_id=instance_id(name, due),
            )
        except InstanceExists:
            return 0
    return 1
