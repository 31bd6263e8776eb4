"""Replaying one instance: the run, its lease guard, suspending and finishing.

A run claims an instance (a lease), loads its recorded steps in one query and calls
the workflow function from the top. Recorded steps return their recorded outcome;
the first unrecorded step is executed and recorded. When the workflow must wait (a
sleep, an event, a retry delay) the instance is marked waiting in the same
transaction that records why, and the run unwinds with `_Suspended`, freeing the
worker. The timer or `send_event` queues the instance again when it is due.

Every write a run makes locks the instance row and checks the run still holds the
lease, so a run that was presumed dead, or whose instance was terminated or
restarted, can no longer record anything.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, connection, transaction
from django_q.exceptions import TimeoutException

from . import attempt_sql, calls, clock, creation, inbox, leases, lifecycle, shutdown
from .attempts import (
    MAX_TRACEBACK_CHARS,
    ControlFlow,
    Failure,
    StepInfo,
    call_step,
)
from .conf import setting, wake_ahead
from .definition import RetryPolicy, get_workflow
from .dispatch import enqueue_run
from .errors import NonDeterminismError, StepFailed
from .metrics import record_run_start, record_step_end, record_step_start
from .models import Instance, Status, Step, StepKind, StepRun, StepStatus
from .names import MAX_INSTANCE_ID, MAX_STEP_NAME, checked_name, is_instance_id
from .outcomes import (
    END_WRITE_PAUSES,
    OUTCOME_FIELDS,
    OVER,
    abandoned,
    record_outcome,
    recorded_failure,
    settle,
)
from .payloads import to_json_value
from .step import StepContext, WorkflowEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Suspended(ControlFlow):
    """The instance now waits; unwind the workflow function."""


class _Stopped(ControlFlow):
    """This run may not go on: it lost its lease, or the instance was paused or handed back."""


class _EngineFailure(ControlFlow):
    """The engine's own database write failed; the run is abandoned and recovered later."""


class _RollingBack(ControlFlow):
    """terminate(rollback=True): the run stops at its first unfinished step to compensate."""


def run_instance(instance_id: str) -> str:
    """Run the instance if it is queued and unclaimed; return what became of the run."""
    if shutdown.draining():
        enqueue_run(instance_id)  # this delivery is used up: another cluster takes it
        return "handed back"
    instance = lifecycle.claim(instance_id, now=clock.now())
    if instance is None:
        return "skipped"
    leases.hold(instance.lease_token)
    try:
        return _Run(instance).execute()
    finally:
        leases.let_go(instance.lease_token)


def _error_dict(error_type: str, message: str) -> dict[str, str]:
    return {"type": error_type, "message": message}


class _Run:
    """One execution of one instance, from claim to suspend, finish or stop."""

    def __init__(self, instance: Instance) -> None:
        self.instance_id = instance.id
        self.token = instance.lease_token
        self.generation = instance.generation
        self.workflow = instance.workflow
        self.event = WorkflowEvent(
            payload=instance.params, instance_id=instance.id, timestamp=instance.created_at
        )
        recorded: list[Step] = []
        # The calls of each step.parallel group (by the group's id): not steps of the
        # sequence, whose order the run checks.
        self.members: dict[int, list[Step]] = defaultdict(list)
        for step in Step.objects.filter(instance_id=instance.id, generation=instance.generation).order_by(
            "id"
        ):
            (self.members[step.group_id] if step.group_id else recorded).append(step)
        self.history: dict[str, Step] = {step.key: step for step in recorded}
        record_run_start(recorded, instance.updated_at)
        # Recorded steps must be reached in the order they were recorded; `reached`
        # counts how many of them this run has reached so far.
        self.recorded_order = [step.key for step in recorded]
        self.position = {key: index for index, key in enumerate(self.recorded_order)}
        self.reached = 0
        self.patches: dict[str, bool] = {}
        self.nondeterminism: NonDeterminismError | None = None
        self.name_counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.steps_started = 0
        # (name, undo, result, policy, timeout) of each step that succeeded with a rollback=
        self.compensations: list[tuple[str, Callable[..., Any], Any, RetryPolicy, timedelta]] = []
        self.rolling_back = instance.rollback_requested
        self.compensating = False

    # --- the run as a whole ------------------------------------------------------------

    def execute(self) -> str:
        try:
            try:
                fn = get_workflow(self.workflow)
                output = fn(self.event, StepContext(self))
                if self.nondeterminism is not None:  # the workflow caught it: it still stands
                    raise self.nondeterminism
                output = to_json_value(output, what=f'the return value of workflow "{self.workflow}"')
                return self._finish(Status.COMPLETE, output=output)
            except _RollingBack:
                self._compensate()
                return self._finish(Status.TERMINATED)
            except (ControlFlow, TimeoutException):
                raise
            except BaseException as exc:
                exc = self.nondeterminism or exc
                if isinstance(exc, StepFailed):
                    error, failed_step = (
                        _error_dict(exc.error_type, exc.message),
                        getattr(exc, "_step_key", ""),
                    )
                else:
                    error, failed_step = _error_dict(type(exc).__name__, str(exc) or type(exc).__name__), ""
                trace = traceback.format_exc()[-MAX_TRACEBACK_CHARS:]
                if self.nondeterminism is None:  # a broken history has nothing safe to replay
                    self._compensate()
                return self._finish(Status.ERRORED, error=error, failed_step=failed_step, trace=trace)
        except _Suspended:
            return "suspended"
        except _Stopped:
            return "stopped"
        except _EngineFailure:
            logger.exception("run of %s abandoned: the engine could not write", self.instance_id)
            raise

    def _compensate(self) -> None:
        """Run the compensations of the steps that succeeded, newest first: each a recorded
        step ("rollback <name>") with its step's retry policy, so a replay skips the ones
        done. One that fails for good is recorded as failed, and the others still run."""
        self.compensating = True
        for name, undo, result, policy, limit in reversed(self.compensations):
            label = f"rollback {name}"[:MAX_STEP_NAME]
            try:
                self.do_step(self.next_key(label), label, undo, (result,), {}, policy, limit, None)
            except StepFailed as failed:
                logger.warning("instance %s: %s failed for good: %s", self.instance_id, label, failed)

    def _finish(
        self,
        status: Status,
        *,
        output: Any = None,
        error: dict | None = None,
        failed_step: str = "",
        trace: str = "",
    ) -> str:
        """`failed_step`: the key of the step whose failure errored the instance (retry reruns it)."""

        def write(instance: Instance) -> None:
            if status == Status.COMPLETE and instance.rollback_requested:
                raise _RollingBack  # terminate(rollback=True) came while the last step ran
            lifecycle.finish(
                instance,
                clock.now(),
                status,
                output=output,
                error=error,
                error_traceback=trace,
                failed_step_key=failed_step,
            )

        self._transact_retrying(write)
        return str(status)

    def _transact(self, write: Callable[[Instance], T], *, new_step: bool = False, durable: bool = True) -> T:
        """Run `write` in a transaction with the instance locked, if this run may still write.

        `new_step`: the write starts a step, which a pause, or a run that has used up its
        time slice, must not do. Otherwise the lease is released, committed, and the run
        stops. `durable=False`: the commit need not wait for the disk (see
        _commit_without_waiting_for_disk): only the end of an attempt (a result computed
        by user code) and the end of the instance must be durable at once. Any other write
        lost in a database crash is made again by the replay after recovery.
        """
        try:
            with transaction.atomic():
                if not durable:
                    _commit_without_waiting_for_disk()
                instance = Instance.objects.select_for_update().only(*_GUARD_FIELDS).get(pk=self.instance_id)
                if (
                    new_step
                    and instance.rollback_requested
                    and not self.compensating
                    and instance.lease_token == self.token
                ):
                    raise _RollingBack  # terminate(rollback=True) while this run ran
                if not self._must_stop(instance, new_step=new_step):
                    if instance.status == Status.QUEUED:
                        # Resumed while this run still held its lease: the run carries on.
                        lifecycle.carry_on(instance)
                    if new_step:
                        self.steps_started += 1
                    return write(instance)
        except DatabaseError as exc:
            raise _EngineFailure(str(exc)) from exc
        raise _Stopped

    def _transact_retrying(self, write: Callable[[Instance], T]) -> T:
        """`_transact` for a write that records finished work: a transient database error
        (a busy SQLite, a dropped connection) is retried before the run gives up."""
        for pause in END_WRITE_PAUSES:
            try:
                return self._transact(write)
            except _EngineFailure as exc:
                logger.warning("run of %s: write failed (%s); trying again", self.instance_id, exc)
                time.sleep(pause)
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()
        return self._transact(write)

    def _must_stop(self, instance: Instance, *, new_step: bool) -> bool:
        if instance.lease_token != self.token:
            return True  # terminated, restarted, or taken over after this run was presumed dead
        if not new_step:
            return False
        if instance.status == Status.PAUSED:
            lifecycle.stop_paused(instance)
            return True
        if self._must_hand_back():
            lifecycle.hand_back(instance, clock.now())
            return True
        return False

    def _must_hand_back(self) -> bool:
        """Before a new step: the run has used up its time slice (every run gets at least
        one step, so a short slice still makes progress), or its cluster is stopping."""
        sliced = self.steps_started and time.monotonic() - self.started > setting("RUN_SLICE_SECONDS")
        return bool(sliced) or shutdown.draining()

    # --- identity of steps -------------------------------------------------------------

    def next_key(self, name: str) -> str:
        if self.nondeterminism is not None:  # no step may run once the history is broken
            raise self.nondeterminism
        checked_name(name, what="step name", max_length=MAX_STEP_NAME)
        self.name_counts[name] += 1
        return f"{name}#{self.name_counts[name]}"

    def recorded(self, key: str, kind: StepKind) -> Step | None:
        """The recorded step `key`, or None for a new step; checks the run still follows
        its history (same kind, same order, no recorded step left behind)."""
        step = self.history.get(key)
        if self.compensating:
            return step  # compensations follow wherever the run stopped: no order to check
        if self.rolling_back and (step is None or step.status not in OVER):
            raise _RollingBack  # the first step not over: compensate from here
        if key in self.position:
            expected = self.history[self.recorded_order[self.reached]]
            if self.position[key] != self.reached:
                self._broken(
                    f'the workflow reached step "{step.name}" before step "{expected.name}", '
                    "which ran before it"
                )
            self.reached += 1
            if step.kind != kind:
                self._broken(
                    f'step "{step.name}" was recorded as a {step.kind} step but the workflow now '
                    f"runs it as a {kind} step"
                )
        elif step is None and self.reached < len(self.recorded_order):
            missing = self.history[self.recorded_order[self.reached]]
            self._broken(
                f'the workflow started a new step "{key.rpartition("#")[0]}" but never reached '
                f'recorded step "{missing.name}" (renamed, removed or moved?)'
            )
        return step

    def _broken(self, what: str) -> None:
        self.nondeterminism = NonDeterminismError(
            f"the workflow code no longer matches the history of instance {self.instance_id}: {what}. "
            "Change a workflow with instances in flight under `if step.patched(...)`, or restart them."
        )
        raise self.nondeterminism

    def patched(self, patch_id: str) -> bool:
        if self.nondeterminism is not None:
            raise self.nondeterminism
        if patch_id not in self.patches:
            key = f"{patch_id}#patch"  # step keys end in #<number>: no step can collide
            if key in self.history:
                self.recorded(key, StepKind.PATCH)
                self.patches[patch_id] = True
            elif self.reached < len(self.recorded_order):
                self.patches[patch_id] = False  # replaying history from before the patch
            else:
                self._record_patch(key, patch_id)
                self.patches[patch_id] = True
        return self.patches[patch_id]

    def _record_patch(self, key: str, patch_id: str) -> None:
        def write(instance: Instance) -> Step:
            now = clock.now()
            record = self._new_step(
                key, patch_id, StepKind.PATCH, now, status=StepStatus.SUCCEEDED, completed_at=now
            )
            record.save()
            return record

        self.history[key] = self._transact(write, durable=False)

    def _new_step(self, key: str, name: str, kind: StepKind, now: datetime, **fields: Any) -> Step:
        return Step(
            instance_id=self.instance_id,
            generation=self.generation,
            key=key,
            name=name,
            kind=kind,
            created_at=now,
            **fields,
        )

    # --- step.do -----------------------------------------------------------------------

    def do_step(
        self,
        key: str,
        name: str,
        fn: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        policy: RetryPolicy,
        limit: timedelta,
        rollback: Callable[..., Any] | None,
    ) -> Any:
        step = self.recorded(key, StepKind.DO)
        while True:
            if step is not None:
                if step.status == StepStatus.SUCCEEDED:
                    if rollback is not None:
                        self.compensations.append((name, rollback, step.result, policy, limit))
                    return step.result
                if step.status == StepStatus.FAILED:
                    raise recorded_failure(step)
                if step.status == StepStatus.RETRYING and step.wake_at and not self._wait_out(step.wake_at):
                    self._suspend_until(step.wake_at)
                if step.status == StepStatus.RUNNING:
                    # Recorded as started but never ended: its worker died or was killed.
                    step = self._end_attempt(step, None, policy, failure=abandoned(step, name))
                    continue
                if step.status not in (StepStatus.RETRYING, StepStatus.RUNNING):
                    raise AssertionError(f"unexpected status {step.status} for {key}")
            step, attempt = self._start_attempt(step, key, name, limit)
            info = StepInfo(self.instance_id, name, step.attempts)
            result, failure = call_step(fn, args, kwargs, info, limit)
            step = self._end_attempt(step, attempt, policy, result=result, failure=failure)

    def _wait_out(self, wake_at: datetime) -> bool:
        """Whether `wake_at` has come, or comes soon enough to wait for here: the timer
        queues a run up to DURABLE_WAKE_AHEAD_SECONDS early (so that it is not late), and
        the run sleeps the rest in its worker rather than suspend again."""
        left = wake_at - clock.now()
        if left > wake_ahead():
            return False
        if left > timedelta(0):
            time.sleep(left.total_seconds())
        return True

    def _suspend_until(self, wake_at: datetime) -> None:
        self._transact(
            lambda instance: lifecycle.suspend(instance, clock.now(), wake_at=wake_at), durable=False
        )
        raise _Suspended

    def _start_attempt(
        self, step: Step | None, key: str, name: str, limit: timedelta
    ) -> tuple[Step, StepRun]:
        now = clock.now()
        record = step or self._new_step(key, name, StepKind.DO, now, attempts=0)
        record.status = StepStatus.RUNNING
        record.attempts += 1
        record.wake_at = None
        attempt = StepRun(attempt=record.attempts, started_at=now)
        # Without a heartbeat the lease must outlive the attempt, or the run would be
        # presumed dead.
        lease = leases.for_attempt(now, limit)

        def write(instance: Instance) -> None:
            if record.pk is None:
                record.save()
            else:
                record.save(update_fields=["status", "attempts", "wake_at"])
            attempt.step = record
            attempt.save()
            lifecycle.extend_lease(instance, lease)

        # The start of an attempt need not be durable: the end is, and its commit makes
        # this one durable too. A database crash in between only loses the attempt count.
        if self._in_one_statement(attempt_sql.start, lease, record, attempt, new_step=True):
            self.steps_started += 1
        else:
            self._transact(write, new_step=True, durable=False)
        self.history[key] = record
        record_step_start(self.workflow)
        return record, attempt

    def _end_attempt(
        self,
        step: Step,
        attempt: StepRun | None,
        policy: RetryPolicy,
        *,
        result: Any = None,
        failure: Failure | None = None,
    ) -> Step:
        now = clock.now()
        settle(step, now, policy, result=result, failure=failure)
        lease = leases.after_attempt(now)

        def write(instance: Instance) -> None:
            run = attempt
            if run is None:  # abandoned: the attempt its dead worker left running
                run = step.runs.filter(outcome=StepRun.Outcome.RUNNING).last()
                if run is not None:
                    record_outcome(run, now, failure)
            step.save(update_fields=["status", "result", "error", "wake_at", "completed_at"])
            if run is not None:
                run.save(update_fields=OUTCOME_FIELDS)
            lifecycle.extend_lease(instance, lease)

        if attempt is not None:
            record_outcome(attempt, now, failure)
        if attempt is None or not self._in_one_statement(attempt_sql.end, lease, step, attempt):
            self._transact_retrying(write)
        self.history[step.key] = step
        record_step_end(self.workflow, failure, attempt and attempt.duration_ms)
        return step

    def _in_one_statement(
        self,
        write: Callable[..., bool],
        lease: datetime | None,
        step: Step,
        attempt: StepRun,
        *,
        new_step: bool = False,
    ) -> bool:
        """Try `write` (one of attempt_sql's) where it applies; False: take the general path."""
        if not attempt_sql.applies() or self.compensating or (new_step and self._must_hand_back()):
            return False
        try:
            return write(self.instance_id, self.token, lease, step, attempt)
        except DatabaseError:
            logger.warning("run of %s: one-statement write failed; taking the general path", self.instance_id)
            return False

    # --- step.sleep --------------------------------------------------------------------

    def sleep_step(self, key: str, name: str, wake_at_for: Callable[[datetime], datetime]) -> None:
        step = self.recorded(key, StepKind.SLEEP)
        if step is not None and step.status == StepStatus.SUCCEEDED:
            # Ended as of its wake time by the timer that queued this run ahead of it.
            if not self._wait_out(step.completed_at):
                self._suspend_until(step.completed_at)
            return
        if step is not None and step.status == StepStatus.SLEEPING:
            self._wait_out(step.wake_at)

        def write(instance: Instance) -> tuple[Step, bool]:
            now = clock.now()
            record = step or self._new_step(
                key, name, StepKind.SLEEP, now, status=StepStatus.SLEEPING, wake_at=wake_at_for(now)
            )
            if now >= record.wake_at:
                record.status = StepStatus.SUCCEEDED
                record.completed_at = now
                record.save()
                return record, False
            record.save()
            lifecycle.suspend(instance, now, wake_at=record.wake_at)
            return record, True

        step, suspended = self._transact(write, new_step=True, durable=False)
        self.history[key] = step
        if suspended:
            raise _Suspended

    # --- step.wait_for_event -----------------------------------------------------------

    def wait_step(self, key: str, name: str, event_type: str, timeout: timedelta) -> Any:
        step = self.recorded(key, StepKind.WAIT)
        if step is not None and step.status == StepStatus.WAITING and step.wake_at is not None:
            self._wait_out(step.wake_at)  # an event sent meanwhile is kept and found below
        if step is None or step.status not in (StepStatus.SUCCEEDED, StepStatus.TIMED_OUT):

            def write(instance: Instance) -> Step:
                now = clock.now()
                record = step or self._new_step(
                    key,
                    name,
                    StepKind.WAIT,
                    now,
                    status=StepStatus.WAITING,
                    event_type=event_type,
                    wake_at=now + timeout,
                )
                # send_event locks the instance too, so no event slips in between this
                # look and the suspend below.
                event = inbox.oldest_kept(self.instance_id, event_type)
                if event is not None:
                    inbox.satisfy(record, event, now)
                    record.save()
                    event.save(update_fields=["consumed_at", "consumed_by"])
                elif now >= record.wake_at:
                    record.status = StepStatus.TIMED_OUT
                    record.completed_at = now
                    record.save()
                else:
                    record.save()
                    lifecycle.suspend(instance, now, wake_at=record.wake_at, waiting_for=event_type)
                return record

            step = self._transact(write, new_step=True, durable=False)
            self.history[key] = step
        if step.status == StepStatus.SUCCEEDED:
            return step.result
        if step.status == StepStatus.TIMED_OUT:
            raise inbox.timed_out(step, name, event_type)
        raise _Suspended

    # --- step.parallel / step.map ---------------------------------------------------------

    def parallel_step(
        self,
        key: str,
        name: str,
        call_list: list[tuple[Callable[..., Any], tuple]],
        policy: RetryPolicy,
        limit: timedelta,
    ) -> list[Any]:
        group = self.recorded(key, StepKind.PARALLEL)
        if group is None:

            def write(instance: Instance) -> tuple[Step, list[Step]]:
                return calls.record_group(
                    instance,
                    generation=self.generation,
                    key=key,
                    name=name,
                    count=len(call_list),
                    now=clock.now(),
                )

            group, members = self._transact(write, new_step=True, durable=False)
        else:
            members = self.members[group.id]
            if len(members) != len(call_list):
                self._broken(
                    f'step "{name}" was recorded with {len(members)} parallel calls but the workflow '
                    f"now makes {len(call_list)}"
                )
            if group.status not in OVER:  # woken for a retry or a lost call, or resumed
                group, members = self._transact(
                    lambda instance: calls.dispatch(instance, group, policy, clock.now()), durable=False
                )
        self.history[key] = group
        if group.status not in OVER:
            raise _Suspended
        return calls.outcome(members)

    # --- step.run_workflow / step.start_workflow ----------------------------------------

    def child_step(
        self, key: str, name: str, workflow: str, params: Any, child_id: str | None, *, wait: bool
    ) -> Any:
        step = self.recorded(key, StepKind.CHILD)
        if step is None:
            child_id = child_id or _default_child_id(self.instance_id, name, key, self.generation)

            def write(instance: Instance) -> Step:
                now = clock.now()
                # In this run's transaction: the child exists if and only if the step does.
                creation.create_one(
                    workflow=workflow, params=params, instance_id=child_id, parent_id=self.instance_id
                )
                record = self._new_step(key, name, StepKind.CHILD, now, child_id=child_id)
                if wait:
                    record.status = StepStatus.WAITING
                    record.save()
                    lifecycle.suspend(instance, now, wake_at=None)
                else:
                    record.status, record.result, record.completed_at = StepStatus.SUCCEEDED, child_id, now
                    record.save()
                return record

            step = self._transact(write, new_step=True, durable=False)
            self.history[key] = step
            if step.status == StepStatus.WAITING:
                raise _Suspended
        elif step.status == StepStatus.RETRYING:  # the parent's retry() after the child failed
            self.history[key] = step = self._transact(lambda instance: self._child_again(instance, step))
            raise _Suspended
        if step.status == StepStatus.SUCCEEDED:
            return step.result
        if step.status == StepStatus.FAILED:
            failure = StepFailed(name, 1, step.error["type"], step.error["message"])
            failure._step_key = key  # so that retry() reruns the child
            raise failure
        # Still waiting for the child (this run resumed the parent meanwhile): wait again.
        self._transact(lambda instance: lifecycle.suspend(instance, clock.now(), wake_at=None), durable=False)
        raise _Suspended

    def _child_again(self, instance: Instance, step: Step) -> Step:
        """Retry an errored child, restart a terminated one, and wait for it again."""
        child = Instance.objects.select_for_update().get(pk=step.child_id)
        if child.status == Status.ERRORED:
            lifecycle.retry(child, clock.now())
        elif child.status == Status.TERMINATED:
            lifecycle.reopen(child, clock.now(), new_generation=True)
        step.status, step.error, step.completed_at = StepStatus.WAITING, None, None
        step.save(update_fields=["status", "error", "completed_at"])
        lifecycle.suspend(instance, clock.now(), wake_at=None)
        return step


def _default_child_id(parent_id: str, name: str, key: str, generation: int) -> str:
    """f"{parent_id}:{name}", made a valid id: the same on every replay, different for a
    name used again in the run (-2, -3) and for a restarted parent (:g2)."""
    occurrence = key.rpartition("#")[2]
    text = f"{parent_id}:{name}" + ("" if occurrence == "1" else f"-{occurrence}")
    text += "" if generation == 1 else f":g{generation}"
    child_id = re.sub(r"[^A-Za-z0-9_.:@-]", "-", text)
    if not is_instance_id(child_id):
        raise ValueError(
            f'step "{name}": the child\'s default id {child_id!r} is not a valid instance id '
            f"(at most {MAX_INSTANCE_ID} characters): pass id="
        )
    return child_id


# What a run's guarded writes read of the instance row (its params and output can be large).
# (The transitions read workflow, concurrency_key and parent_id: loaded here, not deferred.)
_GUARD_FIELDS = (
    "id",
    "status",
    "lease_token",
    "rollback_requested",
    "workflow",
    "concurrency_key",
    "parent_id",
)


def _commit_without_waiting_for_disk() -> None:
    """PostgreSQL: this transaction's commit returns before its WAL reaches the disk.

    Only for the outermost transaction (never to weaken a caller's), and only for writes
    whose loss in a database crash is harmless because a later durable commit follows.
    """
    if connection.vendor == "postgresql" and not connection.savepoint_ids:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
