"""The `step` object a workflow function receives: the verbs users call.

Imports no ORM, so it can be imported for type hints anywhere; the run it drives
(runtime._Run) implements `RunProtocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .conf import task_timeout
from .definition import RetryPolicy, describe_duration, parse_duration
from .names import MAX_EVENT_TYPE, MAX_STEP_NAME, checked_name

DEFAULT_STEP_TIMEOUT = "10 minutes"
# Each call of a step.parallel replays the instance's recorded steps: past this, split the work.
MAX_CALLS = 1000
DEFAULT_WAIT_TIMEOUT = "24 hours"
MIN_TASK_HEADROOM_SECONDS = 60


@dataclass(frozen=True)
class WorkflowEvent:
    """What the workflow function receives as its first argument."""

    payload: Any
    instance_id: str
    timestamp: datetime


class RunProtocol(Protocol):
    """What the step object needs of the run executing the workflow."""

    instance_id: str

    def next_key(self, name: str) -> str: ...

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
    ) -> Any: ...

    def sleep_step(self, key: str, name: str, wake_at_for: Callable[[datetime], datetime]) -> None: ...

    def wait_step(self, key: str, name: str, event_type: str, timeout: timedelta) -> Any: ...

    def patched(self, patch_id: str) -> bool: ...

    def child_step(
        self, key: str, name: str, workflow: str, params: Any, child_id: str | None, *, wait: bool
    ) -> Any: ...

    def parallel_step(
        self,
        key: str,
        name: str,
        calls: list[tuple[Callable[..., Any], tuple]],
        policy: RetryPolicy,
        limit: timedelta,
    ) -> list[Any]: ...


class StepContext:
    """The `step` argument of a workflow function."""

    def __init__(self, run: RunProtocol) -> None:
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
        rollback: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` at most once successfully; return its recorded result.

        `rollback`: `rollback(result)` undoes the step; it runs, as a recorded step with the
        same retries, if the instance errors with an uncaught failure later or is
        terminated with rollback=True."""
        key = self._run.next_key(name)
        if not callable(fn):
            raise TypeError(f'step "{name}": {fn!r} is not callable')
        if rollback is not None and not callable(rollback):
            raise TypeError(f'step "{name}": rollback {rollback!r} is not callable')
        policy = RetryPolicy.coerce(retries)
        return self._run.do_step(key, name, fn, args, kwargs, policy, _step_timeout(name, timeout), rollback)

    def parallel(
        self, name: str, calls: Any, retries: RetryPolicy | dict | None = None, timeout: Any = None
    ) -> list[Any]:
        """Run each of `calls` (a callable, or a tuple `(callable, *args)`) as a step of its
        own (named f"{name}[{i}]"), in parallel on any worker, while the instance waits
        holding no worker; return their results in order. Each call is memoised and retried
        by `retries`; if one fails for good, StepFailed is raised once every call has ended."""
        key = self._run.next_key(name)
        call_list = [_as_call(name, index, call) for index, call in enumerate(_as_list(name, "calls", calls))]
        if len(call_list) > MAX_CALLS:
            raise ValueError(
                f'step "{name}": {len(call_list)} parallel calls is more than {MAX_CALLS}; '
                "split them into several steps"
            )
        if call_list:
            checked_name(
                call_name(name, len(call_list) - 1), what="parallel call name", max_length=MAX_STEP_NAME
            )
        policy = RetryPolicy.coerce(retries)
        return self._run.parallel_step(key, name, call_list, policy, _step_timeout(name, timeout))

    def map(
        self,
        name: str,
        fn: Callable[[Any], Any],
        items: Any,
        retries: RetryPolicy | dict | None = None,
        timeout: Any = None,
    ) -> list[Any]:
        """`step.parallel(name, [(fn, item) for item in items], ...)`: fn(item) for each
        item, each a step of its own, in parallel; the results in the order of `items`."""
        if not callable(fn):
            raise TypeError(f'step "{name}": {fn!r} is not callable')
        items = _as_list(name, "items", items)
        return self.parallel(name, [(fn, item) for item in items], retries=retries, timeout=timeout)

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

    def run_workflow(self, name: str, workflow: str, params: Any = None, id: str | None = None) -> Any:
        """Start a child instance of `workflow` (once) and wait, holding no worker, for it to
        finish; return its output. Its error, or its termination, is this step's StepFailed.
        The child's id defaults to f"{parent id}:{name}"."""
        key = self._run.next_key(name)
        return self._run.child_step(key, name, workflow, params, id, wait=True)

    def start_workflow(self, name: str, workflow: str, params: Any = None, id: str | None = None) -> str:
        """Start a child instance of `workflow` (once) and go on at once; return its id."""
        key = self._run.next_key(name)
        return self._run.child_step(key, name, workflow, params, id, wait=False)


def _step_timeout(name: str, timeout: Any) -> timedelta:
    """A step's timeout: longer than zero and short enough to fit in a worker task."""
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
    return limit


def call_name(name: str, index: int) -> str:
    """The name of call `index` of step.parallel `name`."""
    return f"{name}[{index}]"


def _as_list(name: str, what: str, values: Any) -> list[Any]:
    if isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
        raise TypeError(
            f'step "{name}": {what} must be a list (or another sequence), got {type(values).__name__}'
        )
    return list(values)


def _as_call(name: str, index: int, call: Any) -> tuple[Callable[..., Any], tuple]:
    """A call as (function, args), from a callable or a tuple (callable, *args)."""
    if callable(call):
        return call, ()
    if isinstance(call, tuple) and call and callable(call[0]):
        return call[0], call[1:]
    raise TypeError(
        f'step "{name}": call {index} must be a callable or a tuple (callable, *args), got {call!r}'[:300]
    )


def _as_aware_datetime(when: datetime | int | float) -> datetime:
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"sleep_until needs an aware datetime (with a timezone), got {when!r}")
        return when
    if isinstance(when, int | float) and not isinstance(when, bool):
        return datetime.fromtimestamp(when, tz=UTC)
    raise ValueError(f"sleep_until needs an aware datetime or epoch seconds, got {when!r}")
