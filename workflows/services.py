"""Changing instances: creation, events and the lifecycle. Transactions live here.

The Python API, the command line and the web all call these functions; none of them
runs workflow code, they change rows and queue runs.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import clock, creation, inbox, inbox_sql, lifecycle, retention
from .definition import parse_duration
from .errors import InstanceNotFound, InvalidState
from .models import FINISHED_STATUSES, Action, Event, Instance, Status, Step, StepRun
from .names import (
    MAX_EVENT_TYPE,
    MAX_STEP_NAME,
    MAX_WORKFLOW_NAME,
    checked_name,
    is_instance_id,
)
from .payloads import to_json_value


def create_instances(*, workflow: str, items: list[dict[str, Any]]) -> list[Instance]:
    """Create and queue instances of `workflow`, all or none.

    Each item is {"params": JSON value, "id": optional str}.
    """
    return creation.create(workflow=workflow, items=items)


def create_instance(*, workflow: str, params: Any = None, instance_id: str | None = None) -> Instance:
    """Create and queue one instance of `workflow`."""
    return creation.create_one(workflow=workflow, params=params, instance_id=instance_id)


def _locked(instance_id: str) -> Instance:
    # An id that could never have been created names no instance (and a NUL in it
    # would be a database error on PostgreSQL).
    instance = (
        Instance.objects.select_for_update().filter(pk=instance_id).first()
        if is_instance_id(instance_id)
        else None
    )
    if instance is None:
        raise InstanceNotFound.for_id(instance_id)
    return instance


def _require(instance: Instance, action: str) -> None:
    if not instance.allows(action):
        allowed = " or ".join(Action(action).allowed_statuses)
        raise InvalidState(
            f'cannot {action} instance "{instance.id}": it is {instance.status} '
            f"(only possible when {allowed})"
        )


def send_event(*, instance_id: str, event_type: str, payload: Any = None) -> Event:
    """Deliver an event; it wakes the instance if it waits for that type, else it is kept."""
    checked_name(event_type, what="event type", max_length=MAX_EVENT_TYPE)
    payload = to_json_value(payload, what=f'payload of event "{event_type}"')
    with transaction.atomic():
        if inbox_sql.applies() and is_instance_id(instance_id):
            now = clock.now()
            event = Event(instance_id=instance_id, type=event_type, payload=payload, created_at=now)
            if inbox_sql.hand_over(event, now):
                return event
        instance = _locked(instance_id)
        if not instance.accepts_events:
            raise InvalidState(
                f'cannot send event "{event_type}" to instance "{instance_id}": it is {instance.status}'
            )
        now = clock.now()
        event = Event(instance=instance, type=event_type, payload=payload, created_at=now)
        if lifecycle.wakes_for(instance, event_type):
            inbox.hand_to_waiting_step(instance, event, now)
            lifecycle.queue(instance, now)
        event.save()
    return event


def pause_instance(*, instance_id: str) -> Instance:
    """No new step starts until resume; a step already running finishes and is recorded."""
    with transaction.atomic():
        instance = _locked(instance_id)
        _require(instance, "pause")
        lifecycle.pause(instance, clock.now())
    return instance


def resume_instance(*, instance_id: str) -> Instance:
    """Let a paused instance go on (replay finds where it was)."""
    with transaction.atomic():
        instance = _locked(instance_id)
        _require(instance, "resume")
        lifecycle.queue(instance, clock.now())
    return instance


def terminate_instance(*, instance_id: str, rollback: bool = False) -> Instance:
    """End the instance for good; a run in progress can record nothing more. `rollback`:
    first run the compensations (step.do(..., rollback=undo)) of the steps that succeeded,
    newest first; the instance ends as terminated once they ran. Its unfinished children
    are terminated too (each in its own transaction, after this one: a child's end locks
    its parent, so locking them in the other order could deadlock)."""
    with transaction.atomic():
        instance = _locked(instance_id)
        _require(instance, "terminate")
        if rollback:
            lifecycle.request_rollback(instance, clock.now())
        else:
            lifecycle.finish(instance, clock.now(), Status.TERMINATED)
    unfinished = Instance.objects.filter(parent_id=instance.id).exclude(status__in=FINISHED_STATUSES)
    for child_id in unfinished.values_list("id", flat=True):
        try:
            terminate_instance(instance_id=child_id, rollback=rollback)
        except InvalidState:
            pass  # it finished meanwhile
    return instance


def restart_instance(*, instance_id: str, from_step: str | None = None) -> Instance:
    """Discard every step result and run again from the start with the same params; or,
    `from_step`: keep the steps recorded before the first step of that name and run
    again from there.

    The old steps stay in the database under the previous generation, for the record
    (events consumed by discarded waits stay consumed); kept steps are copied, with
    their attempts, into the new one.
    """
    if from_step is not None:
        checked_name(from_step, what="from_step", max_length=MAX_STEP_NAME)
    with transaction.atomic():
        instance = _locked(instance_id)
        _require(instance, "restart")
        kept = [] if from_step is None else _steps_before(instance, from_step)
        lifecycle.reopen(instance, clock.now(), new_generation=True)
        _copy_steps(kept, generation=instance.generation)
    return instance


def _steps_before(instance: Instance, name: str) -> list[Step]:
    steps = list(
        Step.objects.filter(instance=instance, generation=instance.generation)
        .order_by("id")
        .prefetch_related("runs")
    )
    # A parallel call is not a step to restart from: its group is.
    sequence = [step for step in steps if step.group_id is None]
    names = [step.name for step in sequence]
    if name not in names:
        raise ValueError(f'instance "{instance.id}" has no recorded step named "{name}" to restart from')
    first_discarded = sequence[names.index(name)].pk
    return [step for step in steps if step.pk < first_discarded]


def _copy_steps(steps: list[Step], *, generation: int) -> None:
    """Copy `steps` (in their recorded order) and their attempts into `generation`."""
    # One INSERT: the copies get increasing ids, so their recorded order is kept.
    copies = Step.objects.bulk_create([_copy(step, id=None, generation=generation) for step in steps])
    # The copies of parallel calls belong to the copy of their group.
    copy_ids = {step.pk: copy.pk for step, copy in zip(steps, copies, strict=True)}
    calls = [copy for copy in copies if copy.group_id is not None]
    for call in calls:
        call.group_id = copy_ids[call.group_id]
    Step.objects.bulk_update(calls, ["group"])
    StepRun.objects.bulk_create(
        [
            _copy(run, id=None, step_id=copy.pk)
            for step, copy in zip(steps, copies, strict=True)
            for run in step.runs.all()
        ]
    )


def _copy(row, **changes):
    values = {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}
    return type(row)(**{**values, **changes})


def retry_instance(*, instance_id: str) -> Instance:
    """Run an errored instance again from its failed step, with a fresh attempt count."""
    with transaction.atomic():
        instance = _locked(instance_id)
        _require(instance, "retry")
        lifecycle.retry(instance, clock.now())
    return instance


def delete_instance(*, instance_id: str) -> None:
    """Delete a finished instance now, with its steps, attempts and events."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if not instance.is_finished:
            raise InvalidState(
                f'cannot delete instance "{instance_id}": it is {instance.status} (terminate it first)'
            )
        retention.delete_rows([instance.id])


def purge_instances(*, older_than: Any, workflow: str | None = None, status: str | None = None) -> int:
    """Delete finished instances that ended more than `older_than` ago; returns how many."""
    length = parse_duration(older_than)
    finished = retention.older_than(length, now=clock.now())
    if workflow is not None:
        finished = finished.filter(
            workflow=checked_name(workflow, what="workflow", max_length=MAX_WORKFLOW_NAME)
        )
    if status is not None:
        if status not in FINISHED_STATUSES:
            raise ValueError(
                f"status {status!r} is not a finished status: use {', '.join(FINISHED_STATUSES)}"
            )
        finished = finished.filter(status=status)
    return retention.purge(finished)


_ACTION_SERVICES = {
    Action.PAUSE: pause_instance,
    Action.RESUME: resume_instance,
    Action.TERMINATE: terminate_instance,
    Action.RESTART: restart_instance,
    Action.RETRY: retry_instance,
}


def apply_lifecycle_action(*, instance_id: str, action: Action | str) -> Instance:
    """Pause, resume, terminate, restart or retry the instance, by the action's name."""
    if action not in Action.values:
        raise ValueError(f"unknown action {action!r}: use {', '.join(Action.values)}")
    return _ACTION_SERVICES[Action(action)](instance_id=instance_id)
