"""Reading instances: what the Python API, the command line and the web show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Count, F, Func, OrderBy, Q, QuerySet, TextField
from django.db.models.functions import Cast

from . import clock, concurrency, counts
from .definition import registered_workflows
from .errors import InstanceNotFound
from .models import ApiToken, Event, Instance, Schedule, Status, Step, StepKind
from .names import is_instance_id, shown
from .schedules import instance_id, next_due, scheduled


def get_instance(*, instance_id: str) -> Instance:
    instance = Instance.objects.filter(pk=instance_id).first() if is_instance_id(instance_id) else None
    if instance is None:
        raise InstanceNotFound.for_id(instance_id)
    return instance


def instance_status(*, instance_id: str) -> dict[str, Any]:
    instance = get_instance(instance_id=instance_id)
    return {"status": instance.status, "output": instance.output, "error": instance.error}


def current_steps(instance: Instance) -> list[Step]:
    """The steps of the instance's current generation, in the order they were reached."""
    return list(
        Step.objects.filter(instance=instance, generation=instance.generation)
        .prefetch_related("runs")
        .order_by("id")
    )


def instance_report(*, instance_id: str) -> dict[str, Any]:
    """Everything about one instance as plain JSON data."""
    instance = get_instance(instance_id=instance_id)
    return {
        "id": instance.id,
        "workflow": instance.workflow,
        "parent_id": instance.parent_id or None,
        "status": instance.status,
        "params": instance.params,
        "output": instance.output,
        "error": instance.error,
        "created_at": instance.created_at.isoformat(),
        "updated_at": instance.updated_at.isoformat(),
        "finished_at": _iso(instance.finished_at),
        "steps": [
            {
                "name": step.name,
                "key": step.key,
                "kind": step.kind,
                "status": step.status,
                "attempts": step.attempts,
                "result": step.result,
                "error": step.error,
                "wake_at": _iso(step.wake_at),
                "event_type": step.event_type or None,
                "child_id": step.child_id or None,
                "group": step.name.rpartition("[")[0] if step.group_id else None,  # a parallel call's step
                "started_at": step.created_at.isoformat(),  # when the run first reached it
                "completed_at": _iso(step.completed_at),
            }
            for step in current_steps(instance)
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def list_instances(
    *, status: str | None = None, workflow: str | None = None, limit: int = 50
) -> list[Instance]:
    """Newest first (the first page of the console's list, with these filters)."""
    filters = InstanceFilters(workflow=workflow or "", status=status or "")
    return instance_page(filters=filters, size=limit).rows


def parse_page_size(text: str, *, maximum: int) -> int:
    """How many rows a listing should show, given as text (a command-line option, a query
    parameter): a whole number from 1 to `maximum`, else ValueError."""
    try:
        size = int(text)
    except ValueError:  # not a number, or more digits than Python converts
        size = 0
    if not 1 <= size <= maximum:
        raise ValueError(f"must be a whole number from 1 to {maximum:,}, got {shown(text)}")
    return size


# --- the console ----------------------------------------------------------------------

PAGE_SIZE = 50


@dataclass(frozen=True)
class InstanceFilters:
    """What the instances list is narrowed to; empty fields do not filter."""

    workflow: str = ""
    status: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str = ""


@dataclass(frozen=True)
class InstancePage:
    rows: list[Instance]
    next_cursor: str | None  # pass back as `after` for the next (older) page


def filtered_instances(filters: InstanceFilters, *, with_status: bool = True) -> QuerySet[Instance]:
    """The instances the console's filters match (unordered)."""
    rows = Instance.objects.all()
    if filters.workflow:
        rows = rows.filter(workflow=filters.workflow)
    if with_status and filters.status:
        rows = rows.filter(status=filters.status)
    if filters.created_after:
        rows = rows.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        rows = rows.filter(created_at__lt=filters.created_before)
    if filters.search:
        rows = rows.annotate(params_text=Cast("params", TextField())).filter(
            Q(id__icontains=filters.search) | Q(params_text__icontains=filters.search)
        )
    return rows


def status_counts(*, filters: InstanceFilters) -> dict[str, int]:
    """How many instances have each status, under every filter but the status one."""
    counts = dict.fromkeys(Status.values, 0)
    grouped = (
        filtered_instances(filters, with_status=False).order_by().values("status").annotate(n=Count("pk"))
    )
    for row in grouped:
        counts[row["status"]] = row["n"]
    return counts


def encode_cursor(instance: Instance) -> str:
    return f"{instance.created_at.isoformat()}|{instance.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raise ValueError for a cursor this module did not write."""
    created, _, instance_id = cursor.partition("|")
    moment = datetime.fromisoformat(created)
    if not is_instance_id(instance_id) or moment.tzinfo is None:
        raise ValueError(f"invalid page cursor {cursor!r}")
    try:
        # In UTC, the only zone this module writes: PostgreSQL refuses an offset beyond
        # 15:59, and a time near year 1 or 9999 may not exist in UTC at all.
        return moment.astimezone(UTC), instance_id
    except OverflowError:
        raise ValueError(f"invalid page cursor {cursor!r}") from None


def instance_page(
    *, filters: InstanceFilters, after: str | None = None, size: int = PAGE_SIZE
) -> InstancePage:
    """Newest first, by keyset: a page costs the same however deep it is."""
    rows = newest_first(filtered_instances(filters), filters=filters, after=after)
    page = list(rows.defer("output", "error_traceback")[: size + 1])
    more = len(page) > size
    page = page[:size]
    return InstancePage(rows=page, next_cursor=encode_cursor(page[-1]) if more else None)


def newest_first(
    rows: QuerySet[Instance], *, filters: InstanceFilters, after: str | None
) -> QuerySet[Instance]:
    """`rows` newest first, from just after the `after` cursor (a page or a bulk batch)."""
    rows = rows.order_by(_newest_first_key(filters), "-id")
    if after:
        created, instance_id = decode_cursor(after)
        # (created_at, id) < (created, instance_id), written so that the index on
        # (-created_at, -id) gets a range to start from (a bare OR makes it scan and filter).
        rows = rows.filter(Q(created_at__lte=created), Q(created_at__lt=created) | Q(id__lt=instance_id))
    return rows


def _newest_first_key(filters: InstanceFilters) -> OrderBy:
    """`created_at` descending; for a search on SQLite, kept off the index.

    Ordered by the index, SQLite walks from the newest row and tests every row it passes
    until a page has matched, which for a rare search term is the whole table with a
    lookup per row (~150 ms at 100k rows). A search matches few rows, so it is cheaper to
    test them all in one pass and sort what matched (~20 ms): the unary "+" is SQLite's
    way of saying "not through an index". PostgreSQL answers searches from its trigram
    indexes and needs no such hint.
    """
    if filters.search and connection.vendor == "sqlite":
        return Func(F("created_at"), template="+%(expressions)s").desc()
    return F("created_at").desc()


@dataclass(frozen=True)
class WorkflowStats:
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failure_rate(self) -> float | None:
        """Errored among finished-by-the-workflow (complete or errored); None before any."""
        ended = self.counts[Status.COMPLETE] + self.counts[Status.ERRORED]
        return self.counts[Status.ERRORED] / ended if ended else None


def workflow_stats() -> list[WorkflowStats]:
    """Every registered workflow (and any still in the database) with counts by status."""
    by_name: dict[str, dict[str, int]] = {
        name: dict.fromkeys(Status.values, 0) for name in registered_workflows()
    }
    for workflow, status, number in counts.by_workflow_and_status():
        by_name.setdefault(workflow, dict.fromkeys(Status.values, 0))[status] = number
    return [WorkflowStats(name=name, counts=by_name[name]) for name in sorted(by_name)]


@dataclass(frozen=True)
class Timeline:
    steps: list[Step]
    events: list[Event]
    compute_ms: float  # the sum of every attempt's duration: what the instance cost
    earlier_generations: int  # how many times it was restarted


def instance_timeline(*, instance: Instance) -> Timeline:
    """The steps in the order they were reached; a parallel step carries its calls in
    `.members`, instead of them standing in the sequence."""
    steps = current_steps(instance)
    compute_ms = sum(run.duration_ms or 0 for step in steps for run in step.runs.all())
    groups = {step.pk: step for step in steps if step.kind == StepKind.PARALLEL}
    for group in groups.values():
        group.members = []
    for step in steps:
        if step.group_id in groups:
            groups[step.group_id].members.append(step)
    return Timeline(
        steps=[step for step in steps if step.group_id is None],
        events=list(Event.objects.filter(instance=instance).select_related("consumed_by").order_by("id")),
        compute_ms=compute_ms,
        earlier_generations=instance.generation - 1,
    )


@dataclass(frozen=True)
class ScheduleRow:
    workflow: str
    expression: str
    next_due: datetime
    last_started: str  # the instance id of the last due time started, or "-"
    paused: bool = False  # its due times pass without starting


def schedules(*, now: datetime | None = None) -> list[ScheduleRow]:
    """Each scheduled workflow with its cron expression and next due time."""
    now = now or clock.now()
    last = dict(Schedule.objects.values_list("workflow", "last_due"))
    paused = set(Schedule.objects.filter(paused=True).values_list("workflow", flat=True))
    started = set(
        Instance.objects.filter(id__in=[instance_id(name, due) for name, due in last.items()]).values_list(
            "id", flat=True
        )
    )
    rows = []
    for name, expression in sorted(scheduled().items()):
        last_id = instance_id(name, last[name]) if name in last else None
        last_started = last_id if last_id in started else "-"
        rows.append(ScheduleRow(name, expression, next_due(expression, now), last_started, name in paused))
    return rows


def parent_of(*, instance_id: str) -> str | None:
    """The parent's id of a child instance; None for an instance nobody started."""
    parent = get_instance(instance_id=instance_id).parent_id
    return parent or None


def api_tokens_of(*, user: Any) -> list[ApiToken]:
    """The user's own API tokens, newest first (the secret itself is never stored)."""
    return list(ApiToken.objects.filter(user=user).order_by("-created_at", "-id"))


def mark_queued_behind_limit(instances: list[Instance]) -> None:
    """Set `.behind_limit` on each of `instances`: why it is still queued when it waits for
    a slot of its workflow's concurrency limit (as many of its group run as the limit
    allows), else None."""
    limits = concurrency.limited()
    groups = {
        (instance.workflow, instance.concurrency_key)
        for instance in instances
        if instance.status == Status.QUEUED and instance.workflow in limits
    }
    full = {}
    for workflow, key in groups:
        running = Instance.objects.filter(
            workflow=workflow, concurrency_key=key, status=Status.RUNNING
        ).count()
        if running >= limits[workflow]:
            within = f' of key "{key}"' if key else ""
            full[workflow, key] = (
                f"behind the concurrency limit: {running} of {limits[workflow]} running{within}"
            )
    for instance in instances:
        group = (instance.workflow, instance.concurrency_key)
        instance.behind_limit = full.get(group) if instance.status == Status.QUEUED else None
