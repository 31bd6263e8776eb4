"""The start and end of a step's attempt as one guarded statement each, on PostgreSQL.

The general path (runtime._Run._transact) locks the instance row, checks the run still
holds it, writes, and commits: five or six round trips to the database per write. These
do the same in one statement, whose first part locks the instance row and checks the
lease, and whose other parts write only if that row was found: the same row lock, the
same check, so a claim or a terminate is serialised with the write exactly as before.

They apply only in the common case, a run holding an instance that is `running`. When
the guard finds nothing (the lease is lost, or the instance was paused, queued or
handed back meanwhile) nothing is written and the caller takes the general path, which
decides what that means. SQLite cannot write in a common table expression, so it always
takes the general path.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Model

from .models import Instance, Status, Step, StepRun
from .sql import column, db_value, marks, quote, table


def applies() -> bool:
    return connection.vendor == "postgresql"


def start(instance_id: str, token: str, lease_expires: datetime | None, step: Step, attempt: StepRun) -> bool:
    """Save `step` (all of it when new, else its status, attempts and wake_at) and insert
    `attempt`, if the run leased with `token` holds the running instance; also moves its
    lease to `lease_expires` unless None. False, and nothing written, otherwise."""
    guard, params = _guard(instance_id, token, lease_expires, new_step=True)
    if step.pk is None:
        columns, values = _row(step)
        write_step = f"INSERT INTO {table(Step)} ({columns}) SELECT {marks(values)} FROM held RETURNING id"
    else:
        write_step, values = _update(step, ["status", "attempts", "wake_at"])
    attempt_columns, attempt_values = _row(attempt, skip=("step",))
    sql = (
        f"WITH held AS ({guard}), step AS ({write_step}) "
        f"INSERT INTO {table(StepRun)} ({quote('step_id')}, {attempt_columns}) "
        f"SELECT step.id, {marks(attempt_values)} FROM step RETURNING step_id, id"
    )
    # The start need not wait for the disk: the end's commit makes it durable too (as the
    # general path's, runtime._start_attempt). Outside a transaction the statement is its
    # own, so SET LOCAL sent with it, in the same round trip, applies to it alone.
    own_transaction = connection.get_autocommit()
    if own_transaction:
        sql = f"SET LOCAL synchronous_commit TO OFF; {sql}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *values, *attempt_values])
        if own_transaction:
            cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        return False
    step.pk, attempt.pk = row
    attempt.step_id = step.pk
    return True


def end(instance_id: str, token: str, lease_expires: datetime | None, step: Step, attempt: StepRun) -> bool:
    """Save the outcome of `attempt` and of its `step`, on the same terms as `start`."""
    guard, params = _guard(instance_id, token, lease_expires)
    write_step, step_values = _update(step, ["status", "result", "error", "wake_at", "completed_at"])
    write_attempt, attempt_values = _update(
        attempt,
        ["outcome", "ended_at", "duration_ms", "error_type", "error_message", "traceback"],
        only_if="EXISTS (SELECT 1 FROM step)",
    )
    sql = f"WITH held AS ({guard}), step AS ({write_step}) {write_attempt}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *step_values, *attempt_values])
        return cursor.fetchone() is not None


def _guard(
    instance_id: str, token: str, lease_expires: datetime | None, *, new_step: bool = False
) -> tuple[str, list]:
    """The instance row, locked, if this run holds it and it is running (and, before a new
    step, no rollback was asked for). Moving the lease locks the row as FOR UPDATE does."""
    where = f"id = %s AND {quote('lease_token')} = %s AND status = %s"
    if new_step:
        where += f" AND NOT {quote('rollback_requested')}"
    params = [instance_id, token, Status.RUNNING.value]
    if lease_expires is None:
        return f"SELECT id FROM {table(Instance)} WHERE {where} FOR UPDATE", params
    lease = quote("lease_expires_at")
    return f"UPDATE {table(Instance)} SET {lease} = %s WHERE {where} RETURNING id", [lease_expires, *params]


def _update(obj: Model, fields: list[str], only_if: str = "EXISTS (SELECT 1 FROM held)") -> tuple[str, list]:
    assignments = ", ".join(f"{column(type(obj), name)} = %s" for name in fields)
    values = [db_value(obj, name) for name in fields]
    sql = f"UPDATE {table(type(obj))} SET {assignments} WHERE id = %s AND {only_if} RETURNING id"
    return sql, [*values, obj.pk]


def _row(obj: Model, skip: tuple[str, ...] = ()) -> tuple[str, list]:
    fields = [f for f in obj._meta.concrete_fields if not f.primary_key and f.name not in skip]
    return ", ".join(quote(f.column) for f in fields), [db_value(obj, f.name) for f in fields]
