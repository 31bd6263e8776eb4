"""send_event's common case as one statement, on PostgreSQL: the instance waits for the
event's type, so its waiting step takes the event, the instance is queued and the event
is stored as consumed by that step (inbox.hand_to_waiting_step and lifecycle.queue in the
general path, which takes four more round trips and most of the send's time).

The statement's first part locks the instance row if it waits for this type, and its
other parts write only if that row and its waiting step were found: the same lock and the
same conditions as the general path, so a run, a timer or another send is serialised with
it exactly as before. When it finds nothing (the instance waits for something else, is
running or paused, or the wait's step was recorded after this statement's snapshot)
nothing is written and the caller takes the general path, which decides what that means.
SQLite cannot write in a common table expression, so it always takes the general path.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from . import lifecycle
from .dispatch import enqueue_run
from .models import Event, Instance, Status, Step, StepKind, StepStatus
from .sql import column, prep, table

# The event's columns, in the order the statement inserts them.
_EVENT_FIELDS = ("instance", "type", "payload", "created_at", "consumed_at", "consumed_by")


def applies() -> bool:
    return connection.vendor == "postgresql"


def hand_over(event: Event, now: datetime) -> bool:
    """If `event`'s instance waits for its type: hand it to the waiting step, queue the
    instance and a run, and store `event` (consumed); True. False, nothing written, else."""
    queued = lifecycle.queued_fields(now)
    params = [
        # held: the instance, if it waits for this type
        event.instance_id,
        Status.WAITING.value,
        event.type,
        # step: its waiting step takes the payload
        StepStatus.SUCCEEDED.value,
        prep(Step, "result", event.payload),
        prep(Step, "completed_at", now),
        StepKind.WAIT.value,
        StepStatus.WAITING.value,
        event.type,
        StepStatus.WAITING.value,
        # queued: runnable now
        *(prep(Instance, name, value) for name, value in queued.items()),
        # the event, consumed by the step
        event.type,
        prep(Event, "payload", event.payload),
        prep(Event, "created_at", event.created_at),
        prep(Event, "consumed_at", now),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_statement(tuple(queued)), params)
        row = cursor.fetchone()
    if row is None:
        return False
    event.pk, event.consumed_by_id = row
    event.consumed_at = now
    enqueue_run(event.instance_id)
    return True


@cache
def _statement(queued_fields: tuple[str, ...]) -> str:
    instance, step, event = table(Instance), table(Step), table(Event)

    def step_column(name: str) -> str:
        return column(Step, name)

    queued = ", ".join(f"{column(Instance, name)} = %s" for name in queued_fields)
    event_columns = ", ".join(column(Event, name) for name in _EVENT_FIELDS)
    return (
        f"WITH held AS (SELECT id, generation FROM {instance} "
        f"WHERE id = %s AND status = %s AND {column(Instance, 'waiting_for')} = %s FOR UPDATE), "
        f"step AS (UPDATE {step} SET status = %s, result = %s, {step_column('completed_at')} = %s "
        f"WHERE id = (SELECT waiting.id FROM {step} waiting JOIN held "
        f"ON waiting.{step_column('instance')} = held.id AND waiting.generation = held.generation "
        f"WHERE waiting.kind = %s AND waiting.status = %s AND waiting.{step_column('event_type')} = %s "
        f"ORDER BY waiting.id DESC LIMIT 1) "
        # Re-checked on the newest version of the row if another transaction changed it.
        f"AND status = %s RETURNING id, {step_column('instance')}), "
        f"queued AS (UPDATE {instance} SET {queued} "
        f"WHERE id = (SELECT {step_column('instance')} FROM step) RETURNING id) "
        f"INSERT INTO {event} ({event_columns}) "
        f"SELECT queued.id, %s, %s, %s, %s, step.id FROM queued CROSS JOIN step "
        f"RETURNING id, {column(Event, 'consumed_by')}"
    )
