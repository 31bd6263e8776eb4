"""django-q2 entry points: thin, they load and hand over to the runtime."""

from . import calls, runtime


def run_instance(instance_id: str) -> str:
    """Run one instance until it completes, errors or must wait. Safe to deliver twice."""
    return runtime.run_instance(instance_id)


def run_call(step_id: int) -> str:
    """Run one attempt of one parallel call. Safe to deliver twice."""
    return calls.run_call(step_id)
