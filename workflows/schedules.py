"""Cron schedules: `@workflow(name, schedule="0 3 * * *")` starts one instance at each
due time, however many clusters run.

Every worker's timer looks at each tick (DURABLE_TIMER_INTERVAL). A due time is claimed by
one atomic update of the workflow's `Schedule` row (`last_due` moved forward only if it
was earlier), in the transaction that creates the instance, whose id names the due time
(`nightly-billing@2026-12-01T03:00Z`): a second claim changes nothing, and a second
create would be refused. Only the latest due time counts: times missed while no cluster
ran are not replayed one by one, and a schedule seen for the first time starts at its
next due time, not at once. A paused schedule starts none of its due times; resumed, it
starts at its next due time (the ones that passed while it was paused are not caught up).
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
from .names import shown

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
        if not Schedule.objects.filter(workflow=name, last_due__lt=due, paused=False).update(last_due=due):
            return 0  # started by another timer, not due yet, or paused
        try:
            create_one(
                workflow=name,
                params={"scheduled_at": due.isoformat().replace("+00:00", "Z")},
                instance_id=instance_id(name, due),
            )
        except InstanceExists:
            return 0
    return 1


def _expression(name: str) -> str:
    expression = scheduled().get(name)
    if expression is None:
        raise ValueError(f"no scheduled workflow named {shown(name)}: see `workflows schedules`")
    return expression


def pause_schedule(*, workflow: str, now: datetime | None = None) -> Schedule:
    """Stop starting the scheduled `workflow` at its due times (until resume_schedule)."""
    expression = _expression(workflow)
    with transaction.atomic():
        row, _ = Schedule.objects.select_for_update().get_or_create(
            workflow=workflow, defaults={"last_due": latest_due(expression, now or clock.now())}
        )
        row.paused = True
        row.save(update_fields=["paused"])
    return row


def resume_schedule(*, workflow: str, now: datetime | None = None) -> Schedule:
    """Start the scheduled `workflow` again from its next due time: the due times that
    passed while it was paused are not started."""
    expression = _expression(workflow)
    now = now or clock.now()
    with transaction.atomic():
        row, _ = Schedule.objects.select_for_update().get_or_create(
            workflow=workflow, defaults={"last_due": latest_due(expression, now)}
        )
        row.paused = False
        row.last_due = max(row.last_due, latest_due(expression, now))
        row.save(update_fields=["paused", "last_due"])
    return row
