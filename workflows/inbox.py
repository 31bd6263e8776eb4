"""An instance's events and the waits they satisfy, whichever comes first.

An event sent while its instance waits for that type is handed to the waiting step by
send_event, in the transaction that stores it: the resumed run finds the wait done and
replays it, writing nothing. An event sent before any wait for it is kept; the wait
takes the oldest kept event of its type when the run reaches it.
"""

from __future__ import annotations

from datetime import datetime

from .definition import describe_duration
from .errors import WaitTimeout
from .models import Event, Instance, Step, StepKind, StepStatus


def oldest_kept(instance_id: str, event_type: str) -> Event | None:
    return (
        Event.objects.filter(instance_id=instance_id, type=event_type, consumed_at__isnull=True)
        .order_by("id")
        .first()
    )


def satisfy(step: Step, event: Event, now: datetime) -> None:
    """The wait `step` returns `event`'s payload; the caller saves both."""
    step.status = StepStatus.SUCCEEDED
    step.result = event.payload
    step.completed_at = now
    event.consumed_at = now
    event.consumed_by = step


def hand_to_waiting_step(instance: Instance, event: Event, now: datetime) -> None:
    """`instance` (locked) waits for `event`'s type: its waiting step takes the event
    now. Saves the step; the caller saves the event."""
    step = (
        Step.objects.filter(
            instance_id=instance.id,
            generation=instance.generation,
            kind=StepKind.WAIT,
            status=StepStatus.WAITING,
            event_type=event.type,
        )
        .order_by("-id")
        .first()
    )
    if step is not None:
        satisfy(step, event, now)
        step.save(update_fields=["status", "result", "completed_at"])


def timed_out(step: Step, name: str, event_type: str) -> WaitTimeout:
    """What a wait that passed its deadline raises in the workflow."""
    waited = describe_duration(step.wake_at - step.created_at)
    return WaitTimeout(f'wait "{name}" for an event of type "{event_type}" timed out after {waited}')
