"""django-q2 entry points: thin, they load and hand over to the runtime."""

from . import runtime


def run_instance(instance_id: str) -> str:
    """Run one instance until it completes, errors or must wait. Safe to deliver twice."""
    return runtime.run_instance(instance_id)
