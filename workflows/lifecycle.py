"""An instance's state transitions: the one home of its status, lease and wake fields.

Runs (runtime), lifecycle calls (services), the timers and workflows.testing all change an
instance through these functions. Each takes an instance the caller has locked in its
transaction (`select_for_update`), except `claim` and the bulk transitions of the timers,
which lock what they change themselves. (On PostgreSQL two hot paths write in one statement
of their own: attempt_sql.py moves a run's lease, as sized by leases.py, and inbox_sql.py
queues an instance an event wakes, writing `queued_fields`.)

    queued --claim--> running --suspend--> waiting --wake / event--> queued
       ^                 |  \\--hand_back (slice, drain)--> queued
       |                 \\--finish--> complete | errored | terminated
       \\--recover (lease ran out: its worker died)-- running
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet

from . import clock, concurrency, counts, leases
from .dispatch import enqueue_run
from .models import Instance, Status, Step, StepKind, StepStatus
from .signals import instance_finished

logger = logging.getLogger(__name__)

BATCH = 500


def start(instances: list[Instance]) -> None:
    """Store new (queued) instances and queue a run of each."""
    Instance.objects.bulk_create(instances)
    for instance in instances:
        enqueue_run(instance.id)


def claimable(now: datetime) -> QuerySet[Instance]:
    """Queued instances that no live run holds (a run resumed while it ran still does)."""
    return Instance.objects.filter(status=Status.QUEUED).filter(
        Q(lease_token="") | Q(lease_expires_at__lte=now)
    )


def claim(instance_id: str, *, now: datetime) -> Instance | None:
    """Take a claimable instance for a new run, in one guarded UPDATE: two claims at once
    are serialised by the row lock, and the second finds it no longer claimable. An
    instance of a workflow with a concurrency limit is taken only if it has a slot."""
    limits = concurrency.limited()
    if not limits:
        return _claim(instance_id, now)
    with transaction.atomic():
        instance = _claim(instance_id, now)
        if instance is None or instance.workflow not in limits:
            return instance
        if concurrency.admits(instance, limits[instance.workflow]):
            return instance
        transaction.set_rollback(True)  # it stays queued; a freed slot queues it again
        return None


def _claim(instance_id: str, now: datetime) -> Instance | None:
    changes = {
        "status": Status.RUNNING.value,
        "lease_token": uuid.uuid4().hex,
        "lease_expires_at": leases.on_claim(now),
        "updated_at": now,
    }
    # UPDATE ... RETURNING: the claimed row comes back in the same round trip. (The
    # ORM's update() returns a count only.)
    query = claimable(now).filter(pk=instance_id).query
    compiler = query.get_compiler(using=Instance.objects.db)
    where, where_params = compiler.compile(query.where)
    connection = compiler.connection
    fields = [Instance._meta.get_field(name) for name in changes]
    assignments = ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in fields)
    values = [field.get_db_prep_save(changes[field.name], connection) for field in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in Instance._meta.concrete_fields)
    table = connection.ops.quote_name(Instance._meta.db_table)
    claimed = Instance.objects.raw(
        f"UPDATE {table} SET {assignments} WHERE {where} RETURNING {columns}", [*values, *where_params]
    )
    return next(iter(claimed), None)


def release(instance: Instance) -> list[str]:
    """Drop the run's lease; returns the fields to save."""
    instance.lease_token = ""
    instance.lease_expires_at = None
    return ["lease_token", "lease_expires_at"]


def extend_lease(instance: Instance, expires: datetime | None) -> None:
    """A run without a heartbeat moves its lease (see leases.for_attempt); None: no change."""
    if expires is not None:
        instance.lease_expires_at = expires
        instance.save(update_fields=["lease_expires_at"])


def carry_on(instance: Instance) -> None:
    """A run still holding its lease finds its instance resumed (queued): it goes on."""
    instance.status = Status.RUNNING
    instance.save(update_fields=["status"])


def queued_fields(now: datetime) -> dict[str, Any]:
    """What `queue` writes: runnable now, waiting for nothing. (A statement that queues an
    instance itself, inbox_sql.hand_over, writes these and then calls enqueue_run.)"""
    return {"status": Status.QUEUED, "wake_at": None, "waiting_for": "", "updated_at": now}


def queue(instance: Instance, now: datetime, *extra_fields: str) -> None:
    """Make the instance runnable now and queue a run (saving `extra_fields` too)."""
    fields = queued_fields(now)
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.save(update_fields=[*fields, *extra_fields])
    enqueue_run(instance.id)


def hand_back(instance: Instance, now: datetime) -> None:
    """The run stops between steps (its time slice is up, or its cluster is stopping)."""
    queue(instance, now, *release(instance))
    concurrency.slot_freed(instance)


def stop_paused(instance: Instance) -> None:
    """A paused instance's run stops before its next step; resume queues a new one."""
    instance.save(update_fields=release(instance))
    concurrency.slot_freed(instance)


def pause(instance: Instance, now: datetime) -> None:
    instance.status = Status.PAUSED
    instance.updated_at = now
    instance.save(update_fields=["status", "updated_at"])


def suspend(instance: Instance, now: datetime, *, wake_at: datetime | None, waiting_for: str = "") -> None:
    """The instance waits (or stays paused) until `wake_at`, or an event of `waiting_for`,
    or (neither) until a child it waits for finishes."""
    instance.wake_at = wake_at
    instance.waiting_for = waiting_for
    if instance.status != Status.PAUSED:
        instance.status = Status.WAITING
    instance.updated_at = now
    instance.save(update_fields=["wake_at", "waiting_for", "status", "updated_at", *release(instance)])
    concurrency.slot_freed(instance)


def due_by(instance: Instance, wake_at: datetime) -> None:
    """A waiting instance is due no later than `wake_at` (a parallel call of it retries then)."""
    if instance.status == Status.WAITING and (instance.wake_at is None or wake_at < instance.wake_at):
        instance.wake_at = wake_at
        instance.save(update_fields=["wake_at"])


def wakes_for(instance: Instance, event_type: str) -> bool:
    return instance.status == Status.WAITING and instance.waiting_for == event_type


def finish(
    instance: Instance,
    now: datetime,
    status: Status,
    *,
    output: Any = None,
    error: dict | None = None,
    error_traceback: str = "",
    failed_step_key: str = "",
) -> None:
    """End the instance (complete, errored or terminated) and tell `instance_finished`."""
    instance.status = status
    instance.output = output
    instance.error = error
    instance.error_traceback = error_traceback
    instance.failed_step_key = failed_step_key
    instance.finished_at = instance.updated_at = now
    instance.wake_at = None
    instance.waiting_for = ""
    instance.save(
        update_fields=[
            "status",
            "output",
            "error",
            "error_traceback",
            "failed_step_key",
            "finished_at",
            "updated_at",
            "wake_at",
            "waiting_for",
            *release(instance),
        ]
    )
    instance_finished.send(sender=None, instance_id=instance.id, status=Status(status).value)
    concurrency.slot_freed(instance)
    if instance.parent_id:
        _report_to_parent(instance, now)


def _report_to_parent(child: Instance, now: datetime) -> None:
    """A child ended: the parent's step waiting for it (step.run_workflow) takes its
    outcome now, and the parent is queued if it waits, so its run only replays the step."""
    step = Step.objects.filter(
        instance_id=child.parent_id, kind=StepKind.CHILD, child_id=child.id, status=StepStatus.WAITING
    ).first()
    if step is None:
        return  # started with step.start_workflow: nobody waits for it
    if child.status == Status.COMPLETE:
        step.status, step.result = StepStatus.SUCCEEDED, child.output
    else:
        step.status = StepStatus.FAILED
        step.error = child.error or {
            "type": "ChildTerminated",
            "message": f'child instance "{child.id}" was terminated',
        }
    step.completed_at = now
    step.save(update_fields=["status", "result", "error", "completed_at"])
    parent = Instance.objects.select_for_update().filter(pk=child.parent_id).first()
    if parent is not None and parent.status == Status.WAITING and parent.generation == step.generation:
        queue(parent, now)


def retry(instance: Instance, now: datetime) -> None:
    """An errored instance runs again from the step whose failure errored it, with fresh
    attempts; failures the workflow caught and handled stay as they were recorded. A
    failed parallel call reruns with every call of its group that failed."""
    failed = Step.objects.filter(
        instance=instance,
        generation=instance.generation,
        key=instance.failed_step_key,
        status=StepStatus.FAILED,
    )
    group_id = next(iter(failed.values_list("group_id", flat=True)), None)
    if group_id is not None:
        failed = Step.objects.filter(group_id=group_id, status=StepStatus.FAILED)
        Step.objects.filter(pk=group_id).update(status=StepStatus.WAITING, error=None, completed_at=None)
    failed.update(status=StepStatus.RETRYING, attempts=0, wake_at=None, completed_at=None)
    reopen(instance, now, new_generation=False)


def request_rollback(instance: Instance, now: datetime) -> None:
    """terminate(rollback=True): a run (the one running now, at its next step, or a new one)
    runs the compensations, then finishes the instance as terminated."""
    instance.rollback_requested = True
    if instance.status == Status.RUNNING:
        instance.save(update_fields=["rollback_requested"])
    else:
        queue(instance, now, "rollback_requested")


def reopen(instance: Instance, now: datetime, *, new_generation: bool) -> None:
    """Retry (same generation) or restart (a new one): clear the ending and queue a run."""
    counts.forget([(instance.workflow, instance.status, instance.finished_at)])
    instance.rollback_requested = False
    fields = ["output", "error", "error_traceback", "failed_step_key", "finished_at", "rollback_requested"]
    if new_generation:
        instance.generation += 1
        fields.append("generation")
    instance.output = instance.error = instance.finished_at = None
    instance.error_traceback = instance.failed_step_key = ""
    queue(instance, now, *fields, *release(instance))


# --- many at once: the timers -----------------------------------------------------------


def wake_due_instances(*, now: datetime | None = None, ahead: timedelta = timedelta(0)) -> int:
    """Queue waiting instances whose sleep, retry delay or wait deadline has come, or comes
    within `ahead` (the timer's DURABLE_WAKE_AHEAD_SECONDS: their runs wait out the rest)."""
    now = now or clock.now()
    due = Instance.objects.filter(status=Status.WAITING, wake_at__lte=now + ahead)
    # Look before taking the write lock: on SQLite a write transaction blocks all writers.
    if not due.exists():
        return 0
    with transaction.atomic():
        # SKIP LOCKED: several timers share the work; a row one of them holds is its own.
        ids = list(
            due.select_for_update(skip_locked=True).order_by("wake_at").values_list("id", flat=True)[:BATCH]
        )
        Instance.objects.filter(pk__in=ids, status=Status.WAITING).update(
            status=Status.QUEUED, wake_at=None, waiting_for="", updated_at=now
        )
        # Their sleeps are over (or will be, `ahead`, when their runs go on): recorded
        # here for the whole batch, ending at their wake time, so each resumed run replays
        # its sleep instead of writing it (runtime.sleep_step waits until its end and
        # records a sleep it finds over by itself).
        Step.objects.filter(
            instance_id__in=ids,
            generation=F("instance__generation"),
            kind=StepKind.SLEEP,
            status=StepStatus.SLEEPING,
            wake_at__lte=now + ahead,
        ).update(status=StepStatus.SUCCEEDED, completed_at=F("wake_at"))
        for instance_id in ids:
            enqueue_run(instance_id)
    return len(ids)


def recover_abandoned_runs(*, now: datetime | None = None) -> int:
    """Take back leases whose run stopped renewing them (its worker died) and queue a new run."""
    now = now or clock.now()
    expired = Instance.objects.filter(lease_expires_at__lt=now)
    if not expired.exists():
        return 0
    with transaction.atomic():
        rows = list(expired.select_for_update(skip_locked=True).only("id", "status")[:BATCH])
        for instance in rows:
            fields = release(instance)
            if instance.status in (Status.RUNNING, Status.QUEUED):
                logger.warning("recovering instance %s: its run stopped without finishing", instance.id)
                queue(instance, now, *fields)
            else:
                instance.save(update_fields=fields)
    return len(rows)


def seconds_until_next_wake(*, now: datetime, ahead: timedelta = timedelta(0)) -> float | None:
    """How long until the earliest waiting instance is due, `ahead` of time (None: nobody
    waits)."""
    # (One waiting without a deadline, for its children or parallel calls, is not due.)
    waiting = Instance.objects.filter(status=Status.WAITING, wake_at__isnull=False).order_by("wake_at")
    earliest = list(waiting.values_list("wake_at", flat=True)[:1])
    return (earliest[0] - ahead - now).total_seconds() if earliest else None
