"""What an attempt's outcome makes of its step and its attempt row, for the runs of
instances (runtime.py) and of parallel calls (calls.py) alike."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .attempts import Failure
from .definition import RetryPolicy
from .errors import StepFailed
from .models import Step, StepRun, StepStatus

# A recorded step in one of these is over: replaying it returns or raises its outcome.
OVER = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT)

# A write that records finished work (a step's outcome, the instance's end) is tried this
# many times, with these pauses, before the run gives up and leaves it to recovery: a
# transient database error must not throw away a result that was computed.
END_WRITE_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0)


def settle(
    step: Step, now: datetime, policy: RetryPolicy, *, result: Any = None, failure: Failure | None = None
) -> None:
    """What an attempt's outcome makes of its step (not saved): succeeded; retrying, after
    the policy's delay, while attempts are left; or failed for good."""
    if failure is None:
        step.status = StepStatus.SUCCEEDED
        step.result = result
        step.error = None
        step.completed_at = now
        return
    step.error = {"type": failure.type, "message": failure.message}
    if failure.retryable and step.attempts <= policy.limit:
        step.status = StepStatus.RETRYING
        step.wake_at = now + (
            policy.delay_before_retry(step.attempts) if failure.wait_before_retry else timedelta(0)
        )
    else:
        step.status = StepStatus.FAILED
        step.completed_at = now


OUTCOME_FIELDS = ["outcome", "ended_at", "duration_ms", "error_type", "error_message", "traceback"]


def record_outcome(run: StepRun, now: datetime, failure: Failure | None) -> None:
    """The attempt's row ends (not saved; OUTCOME_FIELDS are the fields to save)."""
    run.outcome = StepRun.Outcome.SUCCEEDED if failure is None else StepRun.Outcome.FAILED
    run.ended_at = now
    run.duration_ms = (now - run.started_at).total_seconds() * 1000
    if failure is not None:
        run.error_type = failure.type
        run.error_message = failure.message
        run.traceback = failure.traceback


def abandoned(step: Step, name: str) -> Failure:
    """The failure of an attempt whose worker died under it."""
    return Failure(
        "AttemptAbandoned",
        f'attempt {step.attempts} of step "{name}" never finished: its worker '
        "stopped (crashed, killed, or went past its timeout)",
        # It counts against the retries (a step that kills its worker every time must
        # end), but recovery is not held up by a retry delay.
        wait_before_retry=False,
    )


def recorded_failure(step: Step) -> StepFailed:
    """The StepFailed a replay raises for a step recorded as failed."""
    failure = StepFailed(step.name, step.attempts, step.error["type"], step.error["message"])
    failure._step_key = step.key  # so that retry() reruns only the step that errored
    return failure
