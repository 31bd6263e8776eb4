"""Parallel calls (`step.parallel`, `step.map`): each call a step of its own, in a task of its own.

The instance's run records the group (a `parallel` step) and its calls in one
transaction, queues a task per call and suspends: the instance waits holding no worker.
A call's task claims the call with a lease of its own (renewed by its worker's
heartbeat, like a run's), replays the workflow function from the recorded steps up to
the group to find the call's function and arguments (nothing but the call's id crosses
the queue, so a call may be a closure), runs one attempt and records it. The call that
ends last closes the group and queues the instance, whose run returns the results.

Only the workflow code knows a call's retry policy, so the instance's run deals with
what needs it: a call retrying after a delay moves the instance's wake-up to then, the
timer wakes an instance one of whose calls lost its lease (its worker died), and the
run, replaying to the group, re-dispatches (`dispatch`).

Every write about a call locks its instance row first: calls ending at once, and the
instance's run, are serialised, so exactly one of them sees the group over.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, QuerySet
from django_q.exceptions import TimeoutException

from . import clock, inbox, leases, lifecycle, shutdown
from .attempts import (
    ControlFlow,
    Failure,
    StepInfo,
    call_step,
)
from .definition import RetryPolicy, get_workflow
from .dispatch import enqueue_call
from .errors import StepFailed
from .metrics import record_step_end, record_step_start
from .models import FINISHED_STATUSES, Instance, Status, Step, StepKind, StepRun, StepStatus
from .names import MAX_STEP_NAME, checked_name
from .outcomes import (
    END_WRITE_PAUSES,
    OUTCOME_FIELDS,
    OVER,
    abandoned,
    record_outcome,
    recorded_failure,
    settle,
)
from .step import StepContext, WorkflowEvent, call_name

logger = logging.getLogger(__name__)

# A call starts only while its instance waits for it (or is being run): not once it is
# paused, finished, or restarted into a new generation.
_CALLS_START_WHILE = (Status.WAITING, Status.QUEUED, Status.RUNNING)

_CALL_FIELDS = ["status", "result", "error", "wake_at", "completed_at", "lease_token", "lease_expires_at"]


# --- the instance's run: record, dispatch, read the outcome ---------------------------


def record_group(
    instance: Instance, *, generation: int, key: str, name: str, count: int, now: datetime
) -> tuple[Step, list[Step]]:
    """Record the group and its queued calls, queue a task per call and suspend the
    instance (in the run's transaction, with the instance locked)."""
    group = Step(
        instance_id=instance.id,
        generation=generation,
        key=key,
        name=name,
        kind=StepKind.PARALLEL,
        status=StepStatus.WAITING,
        created_at=now,
    )
    group.save()
    members = Step.objects.bulk_create(
        [
            Step(
                instance_id=instance.id,
                generation=generation,
                key=f"{key}[{index}]",
                name=call_name(name, index),
                kind=StepKind.DO,
                status=StepStatus.QUEUED,
                group=group,
                created_at=now,
            )
            for index in range(count)
        ]
    )
    for call in members:
        enqueue_call(call.pk)
    if members:
        lifecycle.suspend(instance, now, wake_at=None)
    else:
        _close(group, members, now)
    return group, members


def dispatch(instance: Instance, group: Step, policy: RetryPolicy, now: datetime) -> tuple[Step, list[Step]]:
    """The run found its group not over (it was woken, resumed or retried): record the
    attempts of calls whose worker died, queue the calls due to run, and suspend until
    the next retry; or close the group if every call has ended."""
    members = calls_of(group)
    next_wake: datetime | None = None
    for call in members:
        if (
            call.status == StepStatus.RUNNING
            and call.lease_expires_at is not None
            and call.lease_expires_at <= now
        ):
            _record_lost_attempt(call, policy, now)
        if call.status == StepStatus.RETRYING and call.wake_at is not None and call.wake_at > now:
            next_wake = call.wake_at if next_wake is None else min(next_wake, call.wake_at)
        elif call.status in (StepStatus.RETRYING, StepStatus.QUEUED):
            # Queued again even if queued before: its task may have come while the instance
            # was paused (and found nothing to start). A second task finds nothing to claim.
            # Guarded by the call's status: a worker's claim locks the call's row only, so
            # it may have taken the call since it was read here; then it is the worker's.
            requeued = Step.objects.filter(
                pk=call.pk, status__in=(StepStatus.RETRYING, StepStatus.QUEUED)
            ).update(status=StepStatus.QUEUED, wake_at=None)
            if requeued:
                call.status, call.wake_at = StepStatus.QUEUED, None
                enqueue_call(call.pk)
            else:
                call.refresh_from_db()
    if all(call.status in OVER for call in members):
        _close(group, members, now)
    else:
        lifecycle.suspend(instance, now, wake_at=next_wake)
    return group, members


def calls_of(group: Step) -> list[Step]:
    return list(group.calls.order_by("id"))


def outcome(members: list[Step]) -> list[Any]:
    """The results of a group that is over (its calls, `members`), in the order of its
    calls; or the StepFailed of its first call that failed for good."""
    for call in members:
        if call.status == StepStatus.FAILED:
            raise recorded_failure(call)
    return [call.result for call in members]


def _record_lost_attempt(call: Step, policy: RetryPolicy, now: datetime) -> None:
    failure = abandoned(call, call.name)
    run = call.runs.filter(outcome=StepRun.Outcome.RUNNING).last()
    if run is not None:
        record_outcome(run, now, failure)
        run.save(update_fields=OUTCOME_FIELDS)
    settle(call, now, policy, failure=failure)
    call.lease_token, call.lease_expires_at = "", None
    call.save(update_fields=_CALL_FIELDS)


def _close(group: Step, members: list[Step], now: datetime) -> None:
    failed = next((call for call in members if call.status == StepStatus.FAILED), None)
    group.status = StepStatus.FAILED if failed else StepStatus.SUCCEEDED
    group.error = failed.error if failed else None
    group.completed_at = now
    group.save(update_fields=["status", "error", "completed_at"])


# --- a call's task ---------------------------------------------------------------------


def claimable_calls() -> QuerySet[Step]:
    """Calls queued while their instance waits for them."""
    return Step.objects.filter(
        status=StepStatus.QUEUED,
        group__isnull=False,
        generation=F("instance__generation"),
        instance__status__in=_CALLS_START_WHILE,
    )


def run_call(step_id: int) -> str:
    """Run one attempt of a queued call; return what became of it. Safe to deliver twice."""
    if shutdown.draining():
        enqueue_call(step_id)  # this delivery is used up: another cluster takes it
        return "handed back"
    claimed = _claim(step_id, clock.now())
    if claimed is None:
        return "skipped"
    call, attempt = claimed
    token = call.lease_token  # the attempt's end clears call.lease_token
    leases.hold_call(token)
    try:
        return _CallRun(call, attempt).execute()
    finally:
        leases.let_go_call(token)


def _claim(step_id: int, now: datetime) -> tuple[Step, StepRun] | None:
    """Take a queued call for an attempt. The guard is on the call's own row (its status),
    so that of two claims at once the second, waiting for the first's row lock, finds it
    no longer queued (PostgreSQL rechecks only the updated row's own columns, not a join)."""
    token = uuid.uuid4().hex
    with transaction.atomic():
        taken = Step.objects.filter(pk=step_id, status=StepStatus.QUEUED, group__isnull=False).update(
            status=StepStatus.RUNNING,
            attempts=F("attempts") + 1,
            wake_at=None,
            lease_token=token,
            lease_expires_at=leases.on_claim(now),
        )
        if not taken:
            return None
        call = Step.objects.get(pk=step_id)
        instance = Instance.objects.filter(pk=call.instance_id, generation=call.generation)
        if not instance.filter(status__in=_CALLS_START_WHILE).exists():
            transaction.set_rollback(True)  # paused, finished or restarted: it stays queued
            return None
        attempt = StepRun.objects.create(step=call, attempt=call.attempts, started_at=now)
    return call, attempt


class _Reached(ControlFlow):
    """The replay reached the call's group: here is what to call."""

    def __init__(self, fn: Callable[..., Any], args: tuple, policy: RetryPolicy, limit: timedelta) -> None:
        super().__init__()
        self.fn, self.call_args, self.policy, self.limit = fn, args, policy, limit


class _Diverged(ControlFlow):
    """The replay did not follow the recorded steps to the call's group."""


class _CallRun:
    """One attempt of one call: replay to the group, call, record."""

    def __init__(self, call: Step, attempt: StepRun) -> None:
        self.call = call
        self.attempt = attempt
        self.workflow = ""

    def execute(self) -> str:
        call = self.call
        instance = Instance.objects.only("id", "workflow", "params", "created_at").get(pk=call.instance_id)
        self.workflow = instance.workflow
        # The other calls of this group are not needed to replay up to it.
        steps = Step.objects.filter(instance_id=instance.id, generation=call.generation).exclude(
            group_id=call.group_id
        )
        replay = _Replay(instance.id, call, list(steps.order_by("id")))
        event = WorkflowEvent(payload=instance.params, instance_id=instance.id, timestamp=instance.created_at)
        try:
            get_workflow(instance.workflow)(event, StepContext(replay))
        except _Reached as reached:
            return self._attempt(reached)
        except _Diverged as diverged:
            failure = _diverged(str(diverged))
        except (ControlFlow, TimeoutException):
            raise
        except BaseException as exc:
            failure = _diverged(f"the workflow raised {type(exc).__name__} ({exc}) before reaching it")
        else:
            failure = _diverged("the workflow returned without reaching it")
        return self._end(RetryPolicy(limit=0), failure=failure)

    def _attempt(self, reached: _Reached) -> str:
        call = self.call
        expires = leases.for_attempt(clock.now(), reached.limit)
        if expires is not None:  # no heartbeat here: the lease must outlive the attempt
            Step.objects.filter(pk=call.pk, lease_token=call.lease_token).update(lease_expires_at=expires)
        info = StepInfo(call.instance_id, call.name, call.attempts)
        record_step_start(self.workflow)
        result, failure = call_step(reached.fn, reached.call_args, {}, info, reached.limit)
        outcome = self._end(reached.policy, result=result, failure=failure)
        record_step_end(self.workflow, failure, self.attempt.duration_ms)
        return outcome

    def _end(self, policy: RetryPolicy, *, result: Any = None, failure: Failure | None = None) -> str:
        """Record the attempt's outcome (durably: it is the result of user code), retrying
        a transient database error before leaving the call to be recovered."""
        call, now = self.call, clock.now()
        token = call.lease_token
        settle(call, now, policy, result=result, failure=failure)
        record_outcome(self.attempt, now, failure)
        if call.status == StepStatus.RETRYING and call.wake_at <= now:
            call.status, call.wake_at = StepStatus.QUEUED, None  # no delay: queue it at once
        call.lease_token, call.lease_expires_at = "", None
        for pause in (*END_WRITE_PAUSES, None):
            try:
                with transaction.atomic():
                    return self._record_end(token, now)
            except DatabaseError:
                if pause is None:
                    raise
                logger.warning("call %s of %s: write failed; trying again", call.name, call.instance_id)
                time.sleep(pause)
                connection.close_if_unusable_or_obsolete()
        raise AssertionError("unreachable")

    def _record_end(self, token: str, now: datetime) -> str:
        call = self.call
        instance = Instance.objects.select_for_update().get(pk=call.instance_id)
        ended = Step.objects.filter(pk=call.pk, lease_token=token, status=StepStatus.RUNNING).update(
            **{field: getattr(call, field) for field in _CALL_FIELDS}
        )
        if not ended:
            return "stopped"  # presumed dead (its lease ran out) and recovered meanwhile
        self.attempt.save(update_fields=OUTCOME_FIELDS)
        if instance.generation != call.generation or instance.status in FINISHED_STATUSES:
            return str(call.status)
        if call.status == StepStatus.QUEUED:
            enqueue_call(call.pk)
        elif call.status == StepStatus.RETRYING:
            lifecycle.due_by(instance, call.wake_at)
        elif not Step.objects.filter(group_id=call.group_id).exclude(status__in=OVER).exists():
            group = Step.objects.get(pk=call.group_id)
            _close(group, list(group.calls.order_by("id")), now)
            if instance.status == Status.WAITING:
                lifecycle.queue(instance, now)
        return str(call.status)


def _diverged(why: str) -> Failure:
    return Failure(
        "NonDeterminismError",
        f"replaying the workflow to this parallel call did not follow its recorded steps: {why}",
        retryable=False,
    )


class _Replay:
    """The workflow replayed, writing nothing, up to a call's group (a RunProtocol):
    every step before it is over and returns (or raises) its recorded outcome."""

    def __init__(self, instance_id: str, call: Step, steps: list[Step]) -> None:
        self.instance_id = instance_id
        self.call = call
        self.history = {step.key: step for step in steps if step.group_id is None}
        self.members: dict[int, list[Step]] = defaultdict(list)
        for step in steps:
            if step.group_id is not None:
                self.members[step.group_id].append(step)
        self.name_counts: Counter[str] = Counter()

    def next_key(self, name: str) -> str:
        checked_name(name, what="step name", max_length=MAX_STEP_NAME)
        self.name_counts[name] += 1
        return f"{name}#{self.name_counts[name]}"

    def _over(self, key: str, kind: StepKind) -> Step:
        step = self.history.get(key)
        if step is None or step.kind != kind or step.status not in OVER:
            shown = key.rpartition("#")[0]
            raise _Diverged(f'step "{shown}" ({kind}) is not recorded as over before the parallel call')
        return step

    def do_step(self, key: str, name: str, *args: Any) -> Any:
        step = self._over(key, StepKind.DO)
        if step.status == StepStatus.FAILED:
            raise recorded_failure(step)
        return step.result

    def sleep_step(self, key: str, name: str, wake_at_for: Callable[[datetime], datetime]) -> None:
        self._over(key, StepKind.SLEEP)

    def wait_step(self, key: str, name: str, event_type: str, timeout: timedelta) -> Any:
        step = self._over(key, StepKind.WAIT)
        if step.status == StepStatus.TIMED_OUT:
            raise inbox.timed_out(step, name, event_type)
        return step.result

    def patched(self, patch_id: str) -> bool:
        return f"{patch_id}#patch" in self.history

    def child_step(self, key: str, name: str, *args: Any, wait: bool) -> Any:
        step = self._over(key, StepKind.CHILD)
        if step.status == StepStatus.FAILED:
            raise StepFailed(name, 1, step.error["type"], step.error["message"])
        return step.result

    def parallel_step(
        self,
        key: str,
        name: str,
        calls: list[tuple[Callable[..., Any], tuple]],
        policy: RetryPolicy,
        limit: timedelta,
    ) -> list[Any]:
        if key == self.call.key.rpartition("[")[0]:
            index = int(self.call.key.rpartition("[")[2].rstrip("]"))
            if index >= len(calls):
                raise _Diverged(f'step "{name}" now makes {len(calls)} calls, not {index + 1} or more')
            fn, args = calls[index]
            raise _Reached(fn, args, policy, limit)
        group = self._over(key, StepKind.PARALLEL)
        return outcome(self.members[group.id])


# --- the timer --------------------------------------------------------------------------


def wake_for_lost_calls(*, now: datetime | None = None) -> int:
    """Queue the waiting instances one of whose calls lost its lease (its worker died):
    their run records the lost attempt and queues the call again. A lost call of an
    instance that finished or restarted meanwhile just drops its lease."""
    now = now or clock.now()
    lost = Step.objects.filter(lease_expires_at__lt=now)
    if not lost.exists():
        return 0
    current = Q(
        generation=F("instance__generation"), instance__status__in=_CALLS_START_WHILE + (Status.PAUSED,)
    )
    with transaction.atomic():
        lost.exclude(current).update(lease_token="", lease_expires_at=None)
        ids = set(
            lost.filter(current, instance__status=Status.WAITING).values_list("instance_id", flat=True)[
                : lifecycle.BATCH
            ]
        )
        waiting = Instance.objects.select_for_update(skip_locked=True).filter(
            pk__in=ids, status=Status.WAITING
        )
        instances = list(waiting)
        for instance in instances:
            logger.warning("instance %s: a parallel call's worker stopped; recovering it", instance.id)
            lifecycle.queue(instance, now)
    return len(instances)
