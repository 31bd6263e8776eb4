"""The exceptions of the public API. Pure Python: safe to import anywhere."""


class NonRetryableError(Exception):
    """Raise inside a step function to fail the step at once, with no further attempts."""


class WaitTimeout(Exception):
    """Raised in the workflow when `step.wait_for_event` (or an approval) times out."""


class StepFailed(Exception):
    """Raised in the workflow when a step has used up its attempts.

    Carries the step's last error: `error_type` is the exception class name raised by the
    step function, `message` its text.
    """

    def __init__(self, step_name: str, attempts: int, error_type: str, message: str) -> None:
        self.step_name = step_name
        self.attempts = attempts
        self.error_type = error_type
        self.message = message
        super().__init__(f'step "{step_name}" failed after {attempts} attempt(s): {error_type}: {message}')


class WorkflowNotFound(LookupError):
    """No workflow is registered under that name."""


class InstanceNotFound(LookupError):
    """No instance has that id."""

    @classmethod
    def for_id(cls, instance_id: object) -> "InstanceNotFound":
        shown = str(instance_id)
        # Any real id (at most 100 characters) in full; a huge bad one not echoed whole.
        shown = shown if len(shown) <= 100 else shown[:100] + "..."
        return cls(f'no instance with id "{shown}"')


class InstanceExists(ValueError):
    """An instance with that id already exists."""


class InvalidState(Exception):
    """The call makes no sense in the instance's current status."""


class PayloadError(ValueError):
    """A value is not JSON-serialisable or is larger than DURABLE_MAX_PAYLOAD_BYTES."""


class MalformedJSON(PayloadError):
    """Text that should be JSON and is not: the web answers 400 rather than the 422 of
    other PayloadErrors."""


class PayloadTooLarge(PayloadError):
    """A value (or a request body) is larger than DURABLE_MAX_PAYLOAD_BYTES: the web answers
    413 rather than the 422 of other PayloadErrors."""


class NonDeterminismError(Exception):
    """On replay the workflow asked for a different kind of step than the history holds."""
