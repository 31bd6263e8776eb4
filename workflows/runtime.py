"""Replaying one instance: the `step` object, suspending and finishing.

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
import signal
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django_q.exceptions import TimeoutException

from . import clock, leases, shutdown
from .conf import setting, task_timeout
from .definition import RetryPolicy, describe_duration, get_workflow, parse_duration
from .dispatch import enqueue_run
from .errors import NonDeterminismError, NonRetryableError, PayloadError, StepFailed, WaitTimeout
from .models import Event, Instance, Status, Step, StepKind, StepRun, StepStatus
from .names import MAX_EVENT_TYPE, MAX_STEP_NAME, checked_name
from .payloads import to_json_value
from .signals import instance_finished

logger = logging.getLogger(__name__)

DEFAULT_STEP_TIMEOUT = "10 minutes"
DEFAULT_WAIT_TIMEOUT = "24 hours"
MAX_TRACEBACK_CHARS = 20_000
MIN_TASK_HEADROOM_SECONDS = 60
# A write that records finished work (a step's outcome, the instance's end) is tried this
# many times, with these pauses, before the run gives up and leaves it to recovery: a
# transient database error must not throw away a result that was computed.
END_WRITE_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0)

T = TypeVar("T")


@dataclass(frozen=True)
class WorkflowEvent:
    """What the workflow function receives as its first argument."""

    payload: Any
    instance_id: str
    timestamp: datetime


class _Suspended(BaseException):
    """The instance now waits; unwind the workflow function. (BaseException: user code
    catching Exception must not swallow it.)"""


class _Stopped(BaseException):
    """This run may not go on: it lost its lease, or the instance was paused or handed back."""


class _EngineFailure(BaseException):
    """The engine's own database write failed; the run is abandoned and recovered later."""


class _AttemptTimeout(BaseException):
    """Raised inside a step function when its attempt runs past the step's timeout."""


# Exceptions that are the engine's or django-q2's control flow, never user errors: they
# pass through every handler of user code. (django-q2's task timeout is a SystemExit.)
_ENGINE_EXCEPTIONS = (_Suspended, _Stopped, _EngineFailure, _AttemptTimeout, TimeoutException)


def run_instance(instance_id: str) -> str:
    """Run the instance if it is queued and unclaimed; return what became of the run."""
    if shutdown.draining():
        enqueue_run(instance_id)  # this delivery is used up: another cluster takes it
        return "handed back"
    instance = _claim(instance_id)
    if instance is None:
        return "skipped"
    leases.hold(instance.lease_token)
    try:
        return _Run(instance).execute()
    finally:
        leases.let_go(instance.lease_token)


def _claim(instance_id: str) -> Instance | None:
    """Take a queued instance that no live run holds, in one guarded UPDATE: two claims at
    once are serialised by the row lock, and the second finds it no longer claimable."""
    now = clock.now()
    token = uuid.uuid4().hex
    claimed = (
        Instance.objects.filter(pk=instance_id, status=Status.QUEUED)
        # A queued instance may still be held by a live run (resumed while it ran): that
        # run carries on, this one may not start.
        .filter(Q(lease_token="") | Q(lease_expires_at__lte=now))
        .update(
            status=Status.RUNNING, lease_token=token, lease_expires_at=leases.on_claim(now), updated_at=now
        )
    )
    if not claimed:
        return None
    return Instance.objects.filter(pk=instance_id, lease_token=token).first()


def _release(instance: Instance) -> list[str]:
    instance.lease_token = ""
    instance.lease_expires_at = None
    return ["lease_token", "lease_expires_at"]


def _error_dict(error_type: str, message: str) -> dict[str, str]:
    return {"type": error_type, "message": message}


class StepContext:
    """The `step` argument of a workflow function."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    @property
    def instance_id(self) -> str:
        """The id of the instance this step object belongs to."""
        return self._run.instance_id

    def do(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retries: RetryPolicy | dict | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` at most once successfully; return its recorded result."""
        key = self._run.next_key(name)
        if not callable(fn):
            raise TypeError(f'step "{name}": {fn!r} is not callable')
        policy = RetryPolicy.coerce(retries)
        limit = parse_duration(DEFAULT_STEP_TIMEOUT if timeout is None else timeout)
        if limit.total_seconds() <= 0:
            raise ValueError(f'step "{name}": timeout must be longer than zero, got {timeout!r}')
        # An attempt must end before django-q2 kills the task running it; otherwise
        # every attempt would be killed and recovered until the retries ran out.
        task_seconds = task_timeout()
        if task_seconds and limit.total_seconds() > task_seconds - MIN_TASK_HEADROOM_SECONDS:
            raise ValueError(
                f'step "{name}": timeout {describe_duration(limit)} does not fit in a worker task '
                f"({task_seconds} s, DURABLE_TASK_TIMEOUT, less {MIN_TASK_HEADROOM_SECONDS} s): "
                "shorten the step's timeout or raise DURABLE_TASK_TIMEOUT"
            )
        return self._run.do_step(key, name, fn, args, kwargs, policy, limit)

    def sleep(self, name: str, duration: Any) -> None:
        """Suspend the instance for `duration`; no worker is held meanwhile."""
        key = self._run.next_key(name)
        length = parse_duration(duration)
        self._run.sleep_step(key, name, lambda now: now + length)

    def sleep_until(self, name: str, when: datetime | int | float) -> None:
        """Suspend the instance until `when` (an aware datetime or epoch seconds)."""
        key = self._run.next_key(name)
        wake_at = _as_aware_datetime(when)
        self._run.sleep_step(key, name, lambda now: wake_at)

    def patched(self, patch_id: str) -> bool:
        """True where this run takes the new code path, False while replaying history
        recorded before the patch existed (so running instances keep their old path)."""
        checked_name(patch_id, what="patch id", max_length=MAX_STEP_NAME)
        return self._run.patched(patch_id)

    def wait_for_event(self, name: str, type: str, timeout: Any = DEFAULT_WAIT_TIMEOUT) -> Any:
        """Suspend until an event of `type` is sent to this instance; return its payload."""
        key = self._run.next_key(name)
        checked_name(type, what=f'wait "{name}": event type', max_length=MAX_EVENT_TYPE)
        return self._run.wait_step(key, name, type, parse_duration(timeout))


def _as_aware_datetime(when: datetime | int | float) -> datetime:
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"sleep_until needs an aware datetime (with a timezone), got {when!r}")
        return when
    if isinstance(when, int | float) and not isinstance(when, bool):
        return datetime.fromtimestamp(when, tz=UTC)
    raise ValueError(f"sleep_until needs an aware datetime or epoch seconds, got {when!r}")


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
        recorded = list(
            Step.objects.filter(instance_id=instance.id, generation=instance.generation).order_by("id")
        )
        self.history: dict[str, Step] = {step.key: step for step in recorded}
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

    # --- the run as a whole ------------------------------------------------------------

    def execute(self) -> str:
        try:
            fn = get_workflow(self.workflow)
            output = fn(self.event, StepContext(self))
            if self.nondeterminism is not None:  # the workflow caught it: it still stands
                raise self.nondeterminism
            output = to_json_value(output, what=f'the return value of workflow "{self.workflow}"')
        except _Suspended:
            return "suspended"
        except _Stopped:
            return "stopped"
        except _EngineFailure:
            logger.exception("run of %s abandoned: the engine could not write", self.instance_id)
            raise
        except TimeoutException:
            raise
        except BaseException as exc:
            exc = self.nondeterminism or exc
            if isinstance(exc, StepFailed):
                error, failed_step = _error_dict(exc.error_type, exc.message), getattr(exc, "_step_key", "")
            else:
                error, failed_step = _error_dict(type(exc).__name__, str(exc) or type(exc).__name__), ""
            return self._finish(Status.ERRORED, error=error, failed_step=failed_step)
        return self._finish(Status.COMPLETE, output=output)

    def _finish(
        self, status: Status, *, output: Any = None, error: dict | None = None, failed_step: str = ""
    ) -> str:
        """`failed_step`: the key of the step whose failure errored the instance (retry reruns it)."""
        trace = traceback.format_exc()[-MAX_TRACEBACK_CHARS:] if error else ""

        def write(instance: Instance) -> None:
            instance.status = status
            instance.output = output
            instance.error = error
            instance.error_traceback = trace
            instance.failed_step_key = failed_step
            instance.finished_at = instance.updated_at = clock.now()
            instance.wake_at = None
            instance.waiting_for = ""
            fields = _release(instance)
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
                    *fields,
                ]
            )
            instance_finished.send(sender=None, instance_id=instance.id, status=status.value)

        try:
            self._transact_retrying(write)
        except _Stopped:
            return "stopped"
        return str(status)

    def _transact(self, write: Callable[[Instance], T], *, new_step: bool = False, durable: bool = True) -> T:
        """Run `write` in a transaction with the instance locked, if this run may still write.

        `new_step`: the write starts a step, which a pause, or a run that has used up its
        time slice, must not do. Otherwise the lease is released, committed, and the run
        stops. `durable=False`: the commit need not wait for the disk (see
        _commit_without_waiting_for_disk).
        """
        try:
            with transaction.atomic():
                if not durable:
                    _commit_without_waiting_for_disk()
                instance = Instance.objects.select_for_update().only(*_GUARD_FIELDS).get(pk=self.instance_id)
                if not self._must_stop(instance, new_step=new_step):
                    if instance.status == Status.QUEUED:
                        # Resumed while this run still held its lease: the run carries on.
                        instance.status = Status.RUNNING
                        instance.save(update_fields=["status"])
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
            instance.save(update_fields=_release(instance))
            return True
        # Every run gets at least one step, so a short slice still makes progress; a
        # draining worker (its cluster is stopping) hands the instance back at once.
        sliced = self.steps_started and time.monotonic() - self.started > setting("RUN_SLICE_SECONDS")
        if sliced or shutdown.draining():
            instance.status = Status.QUEUED
            instance.save(update_fields=["status", *_release(instance)])
            enqueue_run(instance.id)
            return True
        return False

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

        self.history[key] = self._transact(write)

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

    def _suspend_fields(self, instance: Instance, wake_at: datetime, waiting_for: str = "") -> None:
        """Mark the instance waiting (or leave it paused) until `wake_at`, releasing the lease."""
        instance.wake_at = wake_at
        instance.waiting_for = waiting_for
        if instance.status != Status.PAUSED:
            instance.status = Status.WAITING
        instance.updated_at = clock.now()
        instance.save(update_fields=["wake_at", "waiting_for", "status", "updated_at", *_release(instance)])

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
    ) -> Any:
        step = self.recorded(key, StepKind.DO)
        while True:
            if step is not None:
                if step.status == StepStatus.SUCCEEDED:
                    return step.result
                if step.status == StepStatus.FAILED:
                    failure = StepFailed(name, step.attempts, step.error["type"], step.error["message"])
                    failure._step_key = key  # so that retry() reruns only the step that errored
                    raise failure
                if step.status == StepStatus.RETRYING and step.wake_at and step.wake_at > clock.now():
                    self._suspend_until(step.wake_at)
                if step.status == StepStatus.RUNNING:
                    # Recorded as started but never ended: its worker died or was killed.
                    step = self._end_attempt(
                        step,
                        None,
                        policy,
                        failure=_Failure(
                            "AttemptAbandoned",
                            f'attempt {step.attempts} of step "{name}" never finished: its worker '
                            "stopped (crashed, killed, or went past its timeout)",
                        ),
                    )
                    continue
                if step.status not in (StepStatus.RETRYING, StepStatus.RUNNING):
                    raise AssertionError(f"unexpected status {step.status} for {key}")
            step, attempt = self._start_attempt(step, key, name, limit)
            result, failure = _call_with_timeout(fn, args, kwargs, name, step.attempts, limit)
            step = self._end_attempt(step, attempt, policy, result=result, failure=failure)

    def _suspend_until(self, wake_at: datetime) -> None:
        self._transact(lambda instance: self._suspend_fields(instance, wake_at))
        raise _Suspended

    def _start_attempt(
        self, step: Step | None, key: str, name: str, limit: timedelta
    ) -> tuple[Step, StepRun]:
        def write(instance: Instance) -> tuple[Step, StepRun]:
            now = clock.now()
            record = step or self._new_step(key, name, StepKind.DO, now, attempts=0)
            record.status = StepStatus.RUNNING
            record.attempts += 1
            record.wake_at = None
            if record.pk is None:
                record.save()
            else:
                record.save(update_fields=["status", "attempts", "wake_at"])
            attempt = StepRun.objects.create(step=record, attempt=record.attempts, started_at=now)
            # Without a heartbeat the lease must outlive the attempt, or the run would be
            # presumed dead.
            expires = leases.for_attempt(now, limit)
            if expires is not None:
                instance.lease_expires_at = expires
                instance.save(update_fields=["lease_expires_at"])
            return record, attempt

        # The start of an attempt need not be durable: the end is, and its commit makes
        # this one durable too. A database crash in between only loses the attempt count.
        step, attempt = self._transact(write, new_step=True, durable=False)
        self.history[key] = step
        return step, attempt

    def _end_attempt(
        self,
        step: Step,
        attempt: StepRun | None,
        policy: RetryPolicy,
        *,
        result: Any = None,
        failure: _Failure | None = None,
    ) -> Step:
        def write(instance: Instance) -> Step:
            now = clock.now()
            run = attempt or step.runs.filter(outcome=StepRun.Outcome.RUNNING).last()
            if failure is None:
                step.status = StepStatus.SUCCEEDED
                step.result = result
                step.error = None
                step.completed_at = now
            else:
                step.error = _error_dict(failure.type, failure.message)
                if failure.retryable and step.attempts <= policy.limit:
                    step.status = StepStatus.RETRYING
                    step.wake_at = now + policy.delay_before_retry(step.attempts)
                else:
                    step.status = StepStatus.FAILED
                    step.completed_at = now
            step.save(update_fields=["status", "result", "error", "wake_at", "completed_at"])
            if run is not None:
                run.outcome = StepRun.Outcome.SUCCEEDED if failure is None else StepRun.Outcome.FAILED
                run.ended_at = now
                run.duration_ms = (now - run.started_at).total_seconds() * 1000
                if failure is not None:
                    run.error_type = failure.type
                    run.error_message = failure.message
                    run.traceback = failure.traceback
                run.save(
                    update_fields=[
                        "outcome",
                        "ended_at",
                        "duration_ms",
                        "error_type",
                        "error_message",
                        "traceback",
                    ]
                )
            expires = leases.after_attempt(now)
            if expires is not None:
                instance.lease_expires_at = expires
                instance.save(update_fields=["lease_expires_at"])
            return step

        step = self._transact_retrying(write)
        self.history[step.key] = step
        return step

    # --- step.sleep --------------------------------------------------------------------

    def sleep_step(self, key: str, name: str, wake_at_for: Callable[[datetime], datetime]) -> None:
        step = self.recorded(key, StepKind.SLEEP)
        if step is not None and step.status == StepStatus.SUCCEEDED:
            return

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
            self._suspend_fields(instance, record.wake_at)
            return record, True

        step, suspended = self._transact(write, new_step=True)
        self.history[key] = step
        if suspended:
            raise _Suspended

    # --- step.wait_for_event -----------------------------------------------------------

    def wait_step(self, key: str, name: str, event_type: str, timeout: timedelta) -> Any:
        step = self.recorded(key, StepKind.WAIT)
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
                event = (
                    Event.objects.filter(
                        instance_id=self.instance_id, type=event_type, consumed_at__isnull=True
                    )
                    .order_by("id")
                    .first()
                )
                if event is not None:
                    record.status = StepStatus.SUCCEEDED
                    record.result = event.payload
                    record.completed_at = now
                    record.save()
                    event.consumed_at = now
                    event.consumed_by = record
                    event.save(update_fields=["consumed_at", "consumed_by"])
                elif now >= record.wake_at:
                    record.status = StepStatus.TIMED_OUT
                    record.completed_at = now
                    record.save()
                else:
                    record.save()
                    self._suspend_fields(instance, record.wake_at, waiting_for=event_type)
                return record

            step = self._transact(write, new_step=True)
            self.history[key] = step
        if step.status == StepStatus.SUCCEEDED:
            return step.result
        if step.status == StepStatus.TIMED_OUT:
            waited = describe_duration(step.wake_at - step.created_at)
            raise WaitTimeout(f'wait "{name}" for an event of type "{event_type}" timed out after {waited}')
        raise _Suspended


# What a run's guarded writes read of the instance row (its params and output can be large).
_GUARD_FIELDS = ("id", "status", "lease_token")


def _commit_without_waiting_for_disk() -> None:
    """PostgreSQL: this transaction's commit returns before its WAL reaches the disk.

    Only for the outermost transaction (never to weaken a caller's), and only for writes
    whose loss in a database crash is harmless because a later durable commit follows.
    """
    if connection.vendor == "postgresql" and not connection.savepoint_ids:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


@dataclass(frozen=True)
class _Failure:
    """How an attempt failed."""

    type: str
    message: str
    traceback: str = ""
    retryable: bool = True


def _call_with_timeout(
    fn: Callable[..., Any], args: tuple, kwargs: dict, name: str, attempt: int, limit: timedelta
) -> tuple[Any, _Failure | None]:
    """Call a step function once; return (result, None) or (None, how it failed)."""
    seconds = limit.total_seconds()
    started = time.monotonic()
    timed_out = _Failure(
        "StepTimeout",
        f'attempt {attempt} of step "{name}" went past its timeout of {describe_duration(limit)}',
    )
    try:
        with _interrupt_after(seconds):
            result = fn(*args, **kwargs)
    except _AttemptTimeout:
        return None, timed_out
    except _ENGINE_EXCEPTIONS:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the attempt failed, the worker lives
        return None, _Failure(
            type(exc).__name__,
            str(exc) or type(exc).__name__,
            traceback.format_exc()[-MAX_TRACEBACK_CHARS:],
            retryable=not isinstance(exc, NonRetryableError),
        )
    if time.monotonic() - started > seconds:
        return None, timed_out
    try:
        return to_json_value(result, what=f'the result of step "{name}"'), None
    except PayloadError as exc:
        return None, _Failure("PayloadError", str(exc), retryable=False)


@contextmanager
def _interrupt_after(seconds: float) -> Iterator[None]:
    """Raise _AttemptTimeout in the step function once it has run `seconds`.

    Signals reach only the main thread; elsewhere the attempt is timed after it returns.
    django-q2 arms SIGALRM for its own task timeout, so that alarm is kept and re-armed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    deadline = time.monotonic() + seconds
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    outer_deadline = time.monotonic() + outer_remaining if outer_remaining else None

    def on_alarm(signum: int, frame: Any) -> None:
        if time.monotonic() >= deadline - 0.01:
            raise _AttemptTimeout
        if callable(outer_handler):  # the outer alarm came due first
            outer_handler(signum, frame)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_remaining) if outer_remaining else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_deadline is not None:
            signal.setitimer(signal.ITIMER_REAL, max(outer_deadline - time.monotonic(), 0.001))
