"""The Python client API: create instances and drive them by id.

Imported by `workflows/__init__.py`, so it imports the ORM only inside functions.
"""

from __future__ import annotations

from typing import Any


class Instance:
    """A handle on one workflow instance. Every call goes to the database."""

    def __init__(self, instance_id: str) -> None:
        self.id = instance_id

    def __repr__(self) -> str:
        return f"<workflows.Instance {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instance) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def parent_id(self) -> str | None:
        """The instance that started this one with step.run_workflow/start_workflow, or None."""
        from .selectors import parent_of

        return parent_of(instance_id=self.id)

    def status(self) -> dict[str, Any]:
        """{"status": ..., "output": ..., "error": None or {"type", "message"}}"""
        from .selectors import instance_status

        return instance_status(instance_id=self.id)

    def send_event(self, type: str, payload: Any = None) -> None:
        from .services import send_event

        send_event(instance_id=self.id, event_type=type, payload=payload)

    def pause(self) -> None:
        from .services import pause_instance

        pause_instance(instance_id=self.id)

    def resume(self) -> None:
        from .services import resume_instance

        resume_instance(instance_id=self.id)

    def terminate(self, rollback: bool = False) -> None:
        """End the instance; `rollback=True` runs the compensations of its completed steps
        (newest first) before it ends as terminated."""
        from .services import terminate_instance

        terminate_instance(instance_id=self.id, rollback=rollback)

    def restart(self, from_step: str | None = None) -> None:
        """Run again from the start, or from the first step named `from_step` (the steps
        recorded before it are kept)."""
        from .services import restart_instance

        restart_instance(instance_id=self.id, from_step=from_step)

    def retry(self) -> None:
        from .services import retry_instance

        retry_instance(instance_id=self.id)

    def delete(self) -> None:
        """Delete this finished instance now, with its steps, attempts and events."""
        from .services import delete_instance

        delete_instance(instance_id=self.id)


def create(name: str, params: Any = None, id: str | None = None) -> Instance:
    """Create and queue an instance of the workflow `name`."""
    from .services import create_instance

    return Instance(create_instance(workflow=name, params=params, instance_id=id).id)


def create_batch(name: str, items: list[dict[str, Any]]) -> list[Instance]:
    """Create many instances at once, all or none: items are {"params": ..., "id": ...}."""
    from .services import create_instances

    return [Instance(row.id) for row in create_instances(workflow=name, items=items)]


def get(id: str) -> Instance:
    """A handle on an existing instance; raises InstanceNotFound."""
    from .selectors import get_instance

    return Instance(get_instance(instance_id=id).id)
