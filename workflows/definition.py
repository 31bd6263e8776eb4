"""Defining workflows: the @workflow registry, durations and retry policies.

Pure Python; nothing here knows Django.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .names import MAX_INSTANCE_ID, MAX_WORKFLOW_NAME, checked_name, is_instance_id

WorkflowFunction = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class WorkflowOptions:
    """What `@workflow(...)` says besides the name."""

    # How long a finished instance is kept; None: DURABLE_RETENTION.
    retention: timedelta | None = None
    # A 5-field cron expression in UTC: one instance starts at each due time.
    schedule: str | None = None
    # At most this many instances (per concurrency key) execute steps at once; None: no limit.
    concurrency: int | None = None
    # params -> str: the limit applies per key instead of to the whole workflow.
    concurrency_key: Callable[[Any], Any] | None = None


_registry: dict[str, WorkflowFunction] = {}
_options: dict[str, WorkflowOptions] = {}


def workflow(
    name: str,
    *,
    retention: Any = None,
    schedule: str | None = None,
    concurrency: int | None = None,
    concurrency_key: Callable[[Any], Any] | None = None,
) -> Callable[[WorkflowFunction], WorkflowFunction]:
    """Register the decorated function as the workflow called `name`.

    `retention`: how long its finished instances are kept (a duration; default the
    DURABLE_RETENTION setting). `schedule`: a 5-field cron expression in UTC ("0 3 * * *"):
    an instance starts at each due time. `concurrency`: at most this many of its instances
    execute steps at once (the others stay queued, first come first served);
    `concurrency_key(params) -> str` applies the limit per key."""
    checked_name(name, what="workflow name", max_length=MAX_WORKFLOW_NAME)
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(
            f'workflow "{name}": concurrency must be a whole number of 1 or more, got {concurrency!r}'
        )
    if concurrency_key is not None and (concurrency is None or not callable(concurrency_key)):
        raise ValueError(
            f'workflow "{name}": concurrency_key must be a function of the params, and needs concurrency=N'
        )
    options = WorkflowOptions(
        concurrency=concurrency,
        concurrency_key=concurrency_key,
        retention=None
        if retention is None
        else positive_duration(retention, what=f'workflow "{name}": retention'),
        schedule=None if schedule is None else checked_cron(schedule, what=f'workflow "{name}": schedule'),
    )
    if schedule is not None and not is_instance_id(f"{name}@2000-01-01T00:00Z"):
        raise ValueError(
            f'workflow "{name}": a scheduled workflow\'s name starts the ids of its instances '
            f'("{name}@2026-12-01T03:00Z"): use letters, digits, "_", "-", "." or ":", at most '
            f"{MAX_INSTANCE_ID - 18} characters"
        )

    def register(fn: WorkflowFunction) -> WorkflowFunction:
        existing = _registry.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(fn):
            raise ValueError(
                f'workflow "{name}" is already registered to {_qualified_name(existing)}; '
                f"cannot register {_qualified_name(fn)} under the same name"
            )
        # The same function imported twice (module reloaded) simply replaces itself.
        _registry[name] = fn
        _options[name] = options
        fn.workflow_name = name  # type: ignore[attr-defined]
        return fn

    return register


def _qualified_name(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def get_workflow(name: str) -> WorkflowFunction:
    """The function registered as `name`; raises WorkflowNotFound."""
    from .errors import WorkflowNotFound

    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise WorkflowNotFound(f'no workflow named "{name}" is registered (known: {known})') from None


def registered_workflows() -> list[str]:
    return sorted(_registry)


def workflow_options(name: str) -> WorkflowOptions:
    return _options.get(name, WorkflowOptions())


def checked_cron(expression: Any, *, what: str) -> str:
    """A valid 5-field cron expression (minute hour day-of-month month day-of-week)."""
    from croniter import croniter

    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(
            f"{what}: {expression!r} is not a 5-field cron expression "
            '(minute hour day-of-month month day-of-week, in UTC, e.g. "0 3 * * *")'
        )
    return " ".join(expression.split())


# --- durations ------------------------------------------------------------------------

_UNIT_SECONDS = {
    "millisecond": 0.001,
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
}
_DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")

Duration = int | float | timedelta | str

# Long enough for any business process, short enough that now + duration fits a datetime.
MAX_DURATION = timedelta(days=36_500)


def parse_duration(value: Duration) -> timedelta:
    """Turn seconds, a timedelta or text like "5 minutes" into a non-negative timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_TEXT.match(value.lower())
        if not match or match.group(2) not in _UNIT_SECONDS:
            raise ValueError(
                f'invalid duration {value!r}: write a number and a unit, such as "30 seconds", '
                f'"5 minutes", "2 hours", "1 day" or "3 weeks"'
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f"invalid duration {value!r}: expected seconds (int or float), a timedelta, "
            f'or a string such as "5 minutes"'
        )
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative length of time")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"invalid duration {value!r}: longer than the longest the engine accepts "
            f"({MAX_DURATION.days:,} days)"
        )
    return timedelta(seconds=seconds)


def positive_duration(value: Duration, *, what: str) -> timedelta:
    """parse_duration, refusing zero: `what` names the setting in the message."""
    try:
        length = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not length:
        raise ValueError(f"{what}: must be longer than zero, got {value!r}")
    return length


def describe_duration(delta: timedelta) -> str:
    """Human text for a timedelta: "2 minutes", "1.5 seconds"."""
    seconds = delta.total_seconds()
    for unit in ("week", "day", "hour", "minute", "second"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"


# --- retry policies -------------------------------------------------------------------

BACKOFFS = ("constant", "linear", "exponential")


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried.

    `limit` counts retries after the first attempt (limit 0: one attempt in all).
    The wait before retry n (1-based) is `delay` (constant), `delay * n` (linear)
    or `delay * 2 ** (n - 1)` (exponential), at most MAX_DURATION (so no limit overflows).
    """

    limit: int = 5
    delay: Duration = "10 seconds"
    backoff: str = "exponential"

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 0:
            raise ValueError(f"retries limit must be a non-negative integer, got {self.limit!r}")
        if self.backoff not in BACKOFFS:
            raise ValueError(f"retries backoff must be one of {', '.join(BACKOFFS)}, got {self.backoff!r}")
        parse_duration(self.delay)

    @classmethod
    def coerce(cls, value: RetryPolicy | dict | None) -> RetryPolicy:
        """Accept a RetryPolicy, a dict with its fields, or None (the default policy)."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"limit", "delay", "backoff"}
            if unknown:
                raise ValueError(
                    f"unknown retries option(s) {', '.join(sorted(map(str, unknown)))}: "
                    f"use limit, delay and backoff"
                )
            return cls(**value)
        raise ValueError(f"retries must be a dict or a RetryPolicy, got {value!r}")

    def delay_before_retry(self, retry_number: int) -> timedelta:
        """The wait before retry `retry_number` (the first retry is 1)."""
        base = parse_duration(self.delay).total_seconds()
        if self.backoff == "constant":
            factor = 1
        elif self.backoff == "linear":
            factor = retry_number
        else:
            factor = 2 ** min(retry_number - 1, 128)  # beyond that every delay is capped anyway
        return timedelta(seconds=min(base * factor, MAX_DURATION.total_seconds()))
