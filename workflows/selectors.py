"""Reading instances: what the Python API, the command line and the web show."""

from __future__ import annotations

from typing import Any

from .errors import InstanceNotFound
from .models import Instance, Step


def get_instance(*, instance_id: str) -> Instance:
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise InstanceNotFound(f'no instance with id "{instance_id}"')
    return instance


def instance_status(*, instance_id: str) -> dict[str, Any]:
    instance = get_instance(instance_id=instance_id)
    return {"status": instance.status, "output": instance.output, "error": instance.error}


def current_steps(instance: Instance) -> list[Step]:
    """The steps of the instance's current generation, in the order they were reached."""
    return list(
        Step.objects.filter(instance=instance, generation=instance.generation)
        .prefetch_related("runs")
        .order_by("id")
    )


def instance_report(*, instance_id: str) -> dict[str, Any]:
    """Everything about one instance as plain JSON data."""
    instance = get_instance(instance_id=instance_id)
    return {
        "id": instance.id,
        "workflow": instance.workflow,
        "status": instance.status,
        "params": instance.params,
        "output": instance.output,
        "error": instance.error,
        "created_at": instance.created_at.isoformat(),
        "finished_at": instance.finished_at.isoformat() if instance.finished_at else None,
        "steps": [
            {
                "name": step.name,
                "key": step.key,
                "kind": step.kind,
                "status": step.status,
                "attempts": step.attempts,
                "result": step.result,
                "error": step.error,
                "wake_at": step.wake_at.isoformat() if step.wake_at else None,
                "event_type": step.event_type or None,
            }
            for step in current_steps(instance)
        ],
    }


def list_instances(
    *, status: str | None = None, workflow: str | None = None, limit: int = 50
) -> list[Instance]:
    """Newest first."""
    rows = Instance.objects.order_by("-created_at", "-id")
    if status:
        rows = rows.filter(status=status)
    if workflow:
        rows = rows.filter(workflow=workflow)
    return list(rows[:limit])
