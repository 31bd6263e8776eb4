"""One attempt of a step function: called with its timeout, its outcome captured.

Whatever the step function raises, `BaseException` included, becomes the attempt's
failure with its real type, message and traceback, so the worker survives; only the
engine's own control flow (ControlFlow) and django-q2's task timeout pass through.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django_q.exceptions import TimeoutException

from .definition import describe_duration
from .errors import NonRetryableError, PayloadError
from .payloads import to_json_value

MAX_TRACEBACK_CHARS = 20_000


class ControlFlow(BaseException):
    """The engine's own control flow (a run suspending or stopping), never a user error:
    a BaseException, so user code catching Exception does not swallow it."""


class _AttemptTimeout(BaseException):
    """Raised inside a step function when its attempt runs past the step's timeout."""


@dataclass(frozen=True)
class Failure:
    """How an attempt failed."""

    type: str
    message: str
    traceback: str = ""
    retryable: bool = True
    # False: the next attempt starts at once, not after the policy's delay (the attempt
    # did not fail on its own: its worker died under it).
    wait_before_retry: bool = True


@dataclass(frozen=True)
class StepInfo:
    """What `workflows.step_info()` tells a step function about the attempt it runs in."""

    instance_id: str
    name: str
    attempt: int  # counts from 1


_current_step: ContextVar[StepInfo | None] = ContextVar("durable_current_step", default=None)


def step_info() -> StepInfo:
    """The instance, step name and attempt number of the step function calling this."""
    info = _current_step.get()
    if info is None:
        raise RuntimeError("workflows.step_info() can only be called inside a step function (step.do)")
    return info


def call_step(
    fn: Callable[..., Any], args: tuple, kwargs: dict, info: StepInfo, limit: timedelta
) -> tuple[Any, Failure | None]:
    """Call a step function once; return (result, None) or (None, how it failed)."""
    name, attempt = info.name, info.attempt
    seconds = limit.total_seconds()
    started = time.monotonic()
    timed_out = Failure(
        "StepTimeout",
        f'attempt {attempt} of step "{name}" went past its timeout of {describe_duration(limit)}',
    )
    current = _current_step.set(info)
    try:
        with _interrupt_after(seconds):
            result = fn(*args, **kwargs)
    except _AttemptTimeout:
        return None, timed_out
    except (ControlFlow, TimeoutException):
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the attempt failed, the worker lives
        return None, Failure(
            type(exc).__name__,
            str(exc) or type(exc).__name__,
            traceback.format_exc()[-MAX_TRACEBACK_CHARS:],
            retryable=not isinstance(exc, NonRetryableError),
        )
    finally:
        _current_step.reset(current)
    if time.monotonic() - started > seconds:
        return None, timed_out
    try:
        return to_json_value(result, what=f'the result of step "{name}"'), None
    except PayloadError as exc:
        return None, Failure("PayloadError", str(exc), retryable=False)


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
